"""A Roboflow YOLOv5/YOLOv8/YOLO11 export: ``train|valid|test/{images,labels}`` and a data.yaml with
``train: ../train/images``, ``val: ../valid/images``, ``nc``, ``names`` and a ``roboflow:`` block.

Its ``../`` paths resolve through Ultralytics' fallback (``../x`` missing -> ``x`` beside the yaml), so it reads as
an Ultralytics dataset; without a data.yaml the subset folders are read and the ids are taken as project ids.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from yolo_retrain.errors import InvalidInput
from yolo_retrain.formats import ultralytics
from yolo_retrain.formats.records import Export, find_yaml, images_in, labels_of

NAME = "roboflow"
SUBSETS = ("train", "valid", "test")


def detect(root: Path) -> bool:
    data_yaml = find_yaml(root)
    if data_yaml is not None:
        try:
            return "roboflow" in (yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {})
        except (OSError, ValueError, TypeError, yaml.YAMLError):
            return False
    return root.is_dir() and any((root / s / "images").is_dir() for s in SUBSETS)


def read(root: Path, images: Path | None = None) -> Export:
    if find_yaml(root) is not None:
        return ultralytics.read_dataset(root, NAME)
    records = [
        labels_of(image, root / subset / "labels" / f"{image.stem}.txt")
        for subset in SUBSETS
        if (root / subset / "images").is_dir()
        for image in images_in(root / subset / "images")
    ]
    if not records:
        raise InvalidInput(f"{root}: no images to import (expected {'|'.join(SUBSETS)}/images/)")
    return Export(NAME, root, None, None, records)
