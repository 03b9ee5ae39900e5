"""CVAT's "Ultralytics YOLO Detection" export: ``data.yaml`` (``path: ./``, ``train: train.txt``, ``names`` as an
``{index: name}`` mapping), ``train.txt`` listing ``images/<subset>/x.jpg``, ``labels/<subset>/x.txt``.

As CVAT writes it: an image without a label file has no objects; the "Detection Track" variant appends a track id
(a 6th column), dropped here; a box CVAT let stick out of the image by a hair (coordinates just outside [0, 1]) is
clipped to the image. Anything further out is refused with its file and line.
"""

from __future__ import annotations

from pathlib import Path

from yolo_retrain.data_yaml import read_yaml
from yolo_retrain.errors import InvalidInput
from yolo_retrain.formats import ultralytics
from yolo_retrain.formats.records import Export, find_yaml

NAME = "cvat-ultralytics"
TOLERANCE = 0.01  # how far outside [0, 1] a coordinate may be and still be clipped (a fraction of the side)


def detect(root: Path) -> bool:
    """A data.yaml whose splits are all ``.txt`` lists beside it, and an ``images/`` folder: CVAT's layout."""
    data_yaml = find_yaml(root)
    if data_yaml is None or not (data_yaml.parent / "images").is_dir():
        return False
    try:
        data = read_yaml(data_yaml)
    except InvalidInput:  # not ours to refuse here: the reader names the problem
        return False
    splits = [data[k] for k in ("train", "val", "test") if isinstance(data.get(k), str)]
    return bool(splits) and all(s.endswith(".txt") and (data_yaml.parent / s).is_file() for s in splits)


def read(root: Path, images: Path | None = None, within: Path | None = None) -> Export:
    return ultralytics.read_dataset(root, NAME, clean=clean_labels, within=within)


def clean_labels(text: str, source: str) -> str:
    """Drop the track id column and clip boxes a hair outside the image; blank lines kept (line numbers stay)."""
    return "\n".join(_clean_line(line) for line in text.splitlines()) + ("\n" if text else "")


def _clean_line(line: str) -> str:
    fields = line.split()
    if len(fields) == 6:
        fields = fields[:5]  # the track id
    if len(fields) != 5:
        return line  # refused later, with its line number
    try:
        cx, cy, w, h = (float(f) for f in fields[1:])
    except ValueError:
        return line
    if all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
        return " ".join(fields)
    if any(v < -TOLERANCE or v > 1 + TOLERANCE for v in (cx, cy, w, h)):
        return " ".join(fields)  # more than a hair: refused by validation, with its line
    x0, x1 = max(cx - w / 2, 0.0), min(cx + w / 2, 1.0)
    y0, y1 = max(cy - h / 2, 0.0), min(cy + h / 2, 1.0)
    return f"{fields[0]} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}"
