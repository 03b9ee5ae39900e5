"""A bare YOLO folder: ``images/x.jpg`` labelled by ``labels/x.txt``; no class names, so its ids are project ids.

Every image needs a label file (an empty one: no objects) and every label file an image: a mismatch here is more
likely a mistake than a background image.
"""

from __future__ import annotations

from pathlib import Path

from yolo_retrain.errors import InvalidInput
from yolo_retrain.formats.records import Export, Record, visible_files
from yolo_retrain.labels import read_label_file

NAME = "plain"


def detect(root: Path) -> bool:
    return root.is_dir() and (root / "images").is_dir() and (root / "labels").is_dir()


def read(root: Path, images: Path | None = None, within: Path | None = None) -> Export:
    images_dir, labels_dir = root / "images", root / "labels"
    for sub in (images_dir, labels_dir):
        if not sub.is_dir():
            raise InvalidInput(f"{sub}: missing folder (expected {root}/images and {root}/labels)")
    image_files = visible_files(images_dir)
    if not image_files:
        raise InvalidInput(f"{images_dir}: no images to import")
    stems = {p.stem for p in image_files}
    for label in visible_files(labels_dir):
        if label.suffix != ".txt" or label.stem not in stems:
            raise InvalidInput(f"{label}: label file without a matching image in {images_dir}")
    records = []
    for image in image_files:
        label = labels_dir / f"{image.stem}.txt"
        if not label.is_file():
            raise InvalidInput(f"{image}: missing label file {label}")
        records.append(Record(image, read_label_file(label), str(label)))
    return Export(NAME, root, None, None, records)
