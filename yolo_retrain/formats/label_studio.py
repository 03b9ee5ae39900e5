"""Label Studio's "YOLO" and "YOLO with images" exports: ``classes.txt``, ``notes.json``, ``labels/<stem>.txt`` and,
with images, ``images/``.

Label Studio numbers classes in its own order (the labeling config's labels, sorted), not the model's: the class
names are what count. ``notes.json``'s ``categories`` (``[{"id": 0, "name": ...}]``) win over ``classes.txt``.
The plain "YOLO" export has no images: they come from ``--images DIR``, matched by file name (a Label Studio
upload's ``<8 hex digits>-`` prefix ignored); label files whose image is found nowhere are listed and refused.
An image without a label file has no objects.
"""

from __future__ import annotations

import json
from pathlib import Path

from yolo_retrain.data_yaml import MAX_CONFIG_BYTES, class_names
from yolo_retrain.errors import InvalidInput
from yolo_retrain.files import read_text_bounded
from yolo_retrain.formats.records import (
    Export,
    ImageFinder,
    Record,
    images_in,
    labels_of,
    names_file,
    refuse_missing,
    visible_files,
)
from yolo_retrain.labels import read_label_file

NAME = "label-studio"
TAKES_IMAGES = True  # --images DIR: the plain "YOLO" export has none


def detect(root: Path) -> bool:
    names = ("notes.json", "classes.txt")
    return root.is_dir() and (root / "labels").is_dir() and any((root / f).is_file() for f in names)


def read(root: Path, images: Path | None = None, within: Path | None = None) -> Export:
    names, names_source = _names(root)
    labels_dir, images_dir = root / "labels", root / "images"
    if not labels_dir.is_dir():
        raise InvalidInput(f"{labels_dir}: missing folder (a Label Studio YOLO export has labels/)")
    in_export = ImageFinder(images_dir if images_dir.is_dir() else None)
    given = ImageFinder(images)
    records, missing = [], []
    for label in visible_files(labels_dir):
        if label.suffix != ".txt":
            continue
        image = in_export.find(label.stem) or given.find(label.stem)
        if image is None:
            missing.append(label.name)
        else:
            records.append(Record(image, read_label_file(label), str(label)))
    refuse_missing(missing, [images_dir if images_dir.is_dir() else None, images])
    labelled = {r.image for r in records}
    if images_dir.is_dir():
        records += [labels_of(i, labels_dir / f"{i.stem}.txt") for i in images_in(images_dir) if i not in labelled]
    if not records:
        raise InvalidInput(f"{root}: no images to import (labels/ and images/ are empty)")
    return Export(NAME, root, names, names_source, sorted(records, key=lambda r: str(r.image)))


def _names(root: Path) -> tuple[list[str], str]:
    notes = root / "notes.json"
    if notes.is_file():
        try:
            categories = json.loads(read_text_bounded(notes, MAX_CONFIG_BYTES, "notes.json"))["categories"]
            by_id = {c["id"]: c["name"] for c in categories}
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(
                f"{notes}: not Label Studio's notes.json (expected categories of id and name: {exc})"
            ) from exc
        return class_names(by_id, str(notes)), str(notes)
    classes = root / "classes.txt"
    return names_file(classes), str(classes)
