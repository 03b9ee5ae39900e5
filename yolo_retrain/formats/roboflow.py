"""A Roboflow YOLOv5/YOLOv8/YOLO11 export: ``train|valid|test/{images,labels}`` and a data.yaml with
``train: ../train/images``, ``val: ../valid/images``, ``nc``, ``names`` and a ``roboflow:`` block.

Its ``../`` paths resolve through Ultralytics' fallback (``../x`` missing -> ``x`` beside the yaml), so it reads as
an Ultralytics dataset; without a data.yaml the subset folders are read and the ids are taken as project ids.
"""

from __future__ import annotations

from pathlib import Path

from yolo_retrain.data_yaml import read_yaml
from yolo_retrain.errors import InvalidInput
from yolo_retrain.formats import ultralytics
from yolo_retrain.formats.records import Export, find_yaml, images_in, labels_of

NAME = "roboflow"
SUBSETS = ("train", "valid", "test")


def detect(root: Path) -> bool:
    data_yaml = find_yaml(root)
    if data_yaml is not None:
        try:
            return "roboflow" in read_yaml(data_yaml)
        except InvalidInput:  # not ours to refuse here: the reader names the problem
            return False
    return root.is_dir() and any((root / s / "images").is_dir() for s in SUBSETS)


def read(root: Path, images: Path | None = None, within: Path | None = None) -> Export:
    if find_yaml(root) is not None:
        return ultralytics.read_dataset(root, NAME, within=within)
    records = [
        labels_of(image, root / subset / "labels" / f"{image.stem}.txt")
        for subset in SUBSETS
        if (root / subset / "images").is_dir()
        for image in images_in(root / subset / "images")
    ]
    if not records:
        raise InvalidInput(f"{root}: no images to import (expected {'|'.join(SUBSETS)}/images/)")
    return Export(NAME, root, None, None, records)
