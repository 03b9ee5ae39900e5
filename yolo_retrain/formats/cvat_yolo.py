"""CVAT's "YOLO 1.1" export (Darknet layout): ``obj.names`` (one class a line), ``obj.data``
(``classes``, ``names``, ``train``, ``valid``), ``train.txt``, and ``obj_<subset>_data/`` holding each image's
label file beside it (the image too, when exported with images).

Without images, they come from ``--images DIR``, matched by file name; label files whose image is found nowhere
are listed and refused. An image without a label file has no objects.
"""

from __future__ import annotations

import os
from pathlib import Path

from yolo_retrain.data_yaml import MAX_CONFIG_BYTES, confine, is_image
from yolo_retrain.errors import InvalidInput
from yolo_retrain.files import read_text_bounded
from yolo_retrain.formats.records import Export, ImageFinder, Record, labels_of, names_file, refuse_missing
from yolo_retrain.labels import read_label_file

NAME = "cvat-yolo"
TAKES_IMAGES = True  # --images DIR: an annotations-only export has none


def detect(root: Path) -> bool:
    return root.is_dir() and any((root / f).is_file() for f in ("obj.names", "obj.data"))


def read(root: Path, images: Path | None = None, within: Path | None = None) -> Export:
    settings = _obj_data(root / "obj.data")
    names_path = _in_export(root, settings.get("names", "obj.names"), within)
    names = names_file(names_path)
    if "classes" in settings and settings["classes"].strip() != str(len(names)):
        raise InvalidInput(
            f"{root / 'obj.data'}: classes = {settings['classes']}, but {names_path} has {len(names)} names"
        )
    folders = sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("obj_") and d.name.endswith("_data"))
    if not folders:
        raise InvalidInput(f"{root}: no obj_<subset>_data folder (CVAT YOLO 1.1 keeps the label files there)")
    given = ImageFinder(images)
    records, missing = [], []
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        beside = {(p.parent, p.stem): p for p in files if is_image(p.name)}
        for label in (p for p in files if p.suffix == ".txt"):
            image = beside.pop((label.parent, label.stem), None) or given.find(label.stem)
            if image is None:
                missing.append(str(label.relative_to(root)))
            else:
                records.append(Record(image, read_label_file(label), str(label)))
        records += [labels_of(image, image.with_suffix(".txt")) for image in beside.values()]
    refuse_missing(missing, [root, images])
    if not records:
        raise InvalidInput(f"{root}: no images to import ({', '.join(f.name for f in folders)} are empty)")
    return Export(NAME, root, names, str(names_path), sorted(records, key=lambda r: str(r.image)))


def _obj_data(path: Path) -> dict[str, str]:
    """``key = value`` lines of ``obj.data`` ({} when there is none)."""
    if not path.is_file():
        return {}
    pairs = (line.partition("=") for line in read_text_bounded(path, MAX_CONFIG_BYTES, "obj.data").splitlines())
    return {key.strip(): value.strip() for key, sep, value in pairs if sep and key.strip()}


def _in_export(root: Path, relative: str, within: Path | None) -> Path:
    """A path ``obj.data`` names, relative to the export; CVAT writes them with a ``data/`` prefix. From a zip
    (``within``), it must be inside the archive."""
    path = root / relative
    if not path.exists() and relative.startswith("data/"):
        path = root / relative.removeprefix("data/")
    confine(os.path.normpath(path), within, f"{root / 'obj.data'}: names = {relative}")
    return path
