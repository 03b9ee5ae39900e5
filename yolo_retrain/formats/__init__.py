"""Exports of the tools teams label with, read as records (image, label text with the export's class ids) plus the
export's own class names: one small module per format, detected from the files present.

``open_export(path)`` takes a folder, a data.yaml, or a ``.zip`` of any of them as the tool downloads it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from yolo_retrain.errors import InvalidInput
from yolo_retrain.formats import cvat_ultralytics, cvat_yolo, label_studio, plain, roboflow, ultralytics
from yolo_retrain.formats.archive import extract_zip, is_zip
from yolo_retrain.formats.conflicts import refuse_conflicts
from yolo_retrain.formats.mapping import ClassMapping
from yolo_retrain.formats.records import Export, Record

# Detection order: the most specific layout first (a Label Studio or CVAT export also has labels/ or a data.yaml).
FORMATS: tuple[ModuleType, ...] = (label_studio, cvat_yolo, roboflow, cvat_ultralytics, ultralytics, plain)
FORMAT_NAMES = tuple(f.NAME for f in FORMATS)


def by_name(name: str) -> ModuleType:
    for module in FORMATS:
        if module.NAME == name:
            return module
    raise InvalidInput(f"--format {name}: unknown format (expected one of {', '.join(FORMAT_NAMES)})")


def detect(root: Path) -> ModuleType:
    """The format whose files ``root`` holds; InvalidInput listing what each format needs if none fits."""
    for module in FORMATS:
        if module.detect(root):
            return module
    raise InvalidInput(
        f"{root}: not an export this tool knows: expected images/ + labels/ (plain), a data.yaml (ultralytics, "
        "cvat-ultralytics, roboflow), classes.txt or notes.json + labels/ (label-studio), obj.names (cvat-yolo), "
        "or a .zip of one of them; or say which with --format"
    )


def read_export(
    root: Path, format: str | None = None, images: Path | None = None, within: Path | None = None
) -> Export:
    """Read the export at ``root`` (a folder or a data.yaml) as ``format``, detected when None.

    ``within``: the folder a zip was extracted into; the paths its config files name must stay inside it.
    """
    if not root.exists():
        raise InvalidInput(f"{root}: no such file or folder")
    candidates = (by_name(format),) if format is not None else FORMATS
    root = _unwrap(root, candidates)
    module = candidates[0] if format is not None else detect(root)
    if images is not None and not getattr(module, "TAKES_IMAGES", False):
        takes = ", ".join(f.NAME for f in FORMATS if getattr(f, "TAKES_IMAGES", False))
        raise InvalidInput(f"--images {images}: a {module.NAME} export holds its images; --images is for {takes}")
    return refuse_conflicts(module.read(root, images, within=within))


@contextmanager
def open_export(path: Path, format: str | None = None, images: Path | None = None) -> Iterator[Export]:
    """The export at ``path``; a ``.zip`` is extracted safely into a temporary folder that lives until exit."""
    path = Path(path)
    if not is_zip(path):
        yield read_export(path, format, images)
        return
    with tempfile.TemporaryDirectory(prefix="yolo-retrain-import-") as tmp:
        extract_zip(path, Path(tmp))
        yield read_export(Path(tmp), format, images, within=Path(tmp))


def _unwrap(root: Path, candidates: tuple[ModuleType, ...]) -> Path:
    """A folder holding nothing but one folder (how many zips are made) stands for that folder."""
    while root.is_dir() and not any(module.detect(root) for module in candidates):
        entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir():
            break
        root = entries[0]
    return root


__all__ = ["FORMAT_NAMES", "ClassMapping", "Export", "Record", "by_name", "detect", "open_export", "read_export"]
