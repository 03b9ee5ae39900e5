"""An Ultralytics dataset: a data.yaml whose ``train``/``val``/``test`` are folders, ``.txt`` lists or lists of
them (resolved as ``yolo train`` resolves them), labels found the Ultralytics way (``images/`` -> ``labels/``).

An image without a label file has no objects (a background image, as Ultralytics reads it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from yolo_retrain.data_yaml import SPLIT_KEYS, label_path, load_data_yaml
from yolo_retrain.errors import InvalidInput
from yolo_retrain.formats.records import Export, Record, find_yaml, labels_of

NAME = "ultralytics"


def detect(root: Path) -> bool:
    return find_yaml(root) is not None


def read(root: Path, images: Path | None = None, within: Path | None = None) -> Export:
    return read_dataset(root, NAME, within=within)


def read_dataset(
    root: Path, name: str, clean: Callable[[str, str], str] | None = None, within: Path | None = None
) -> Export:
    """Every image of every split of the export's data.yaml; ``clean(text, source)`` adjusts each label text;
    ``within`` (an extracted zip): the yaml may name nothing outside it."""
    data_yaml = find_yaml(root)
    if data_yaml is None:
        raise InvalidInput(f"{root}: no data.yaml (expected {root}/data.yaml, or the path of the yaml itself)")
    data = load_data_yaml(data_yaml, "export data.yaml", required=(), within=within)
    if not data.sources:
        raise InvalidInput(f"{data.describe()}: none of {', '.join(SPLIT_KEYS)} is set: no images to import")
    # A test split that is not there is no error: Roboflow writes ``test: ../test/images`` with or without one.
    keys = [k for k in SPLIT_KEYS if k != "test" or all(os.path.exists(p) for p in data.sources.get(k, []))]
    files = sorted({image for key in keys for image in data.images(key)})
    if not files:
        raise InvalidInput(f"{data.describe()}: no images to import")
    records = [labels_of(Path(image), Path(label_path(image))) for image in files]
    if clean is not None:
        records = [Record(r.image, clean(r.label_text, r.label_source), r.label_source) for r in records]
    names = data.names if data.named else None
    return Export(name, data.root, names, str(data.path), records)
