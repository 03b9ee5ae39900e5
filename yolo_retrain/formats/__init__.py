"""Exports of the tools teams label with, read as records (image, label text with the export's class ids) plus the
export's own class names: one small module per format, detected from the files present.

``open_export(path)`` takes a folder, a data.yaml, or a ``.zip`` of any of them as the tool downloads it.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from yolo_retrain.errors import InvalidInput
from yolo_retrain.formats import cvat_ultralytics, cvat_yolo, label_studio, plain, roboflow, ultralytics
from yolo_retrain.formats.archive import extract_zip, is_zip
from yolo_retrain.formats.mapping import ClassMapping
from yolo_retrain.formats.records import Export, Record
from yolo_retrain.hashing import file_sha256
from yolo_retrain.labels import MAX_IMAGE_BYTES

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


def read_export(root: Path, format: str | None = None, images: Path | None = None, within: Path | None = None) -> Export:
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
    return _one_labelling_per_image(_one_label_file_per_image(module.read(root, images, within=within)))


def _one_label_file_per_image(export: Export) -> Export:
    """Refuse two label files paired with one image (e.g. ``a.txt`` and ``9b24222a-a.txt``, once Label Studio's upload
    prefix is stripped): one would silently supersede the other, and which one is right is unknown."""
    seen: dict[Path, Record] = {}
    for record in export.records:
        first = seen.setdefault(record.image, record)
        if first is not record:
            raise InvalidInput(
                f"{first.label_source} and {record.label_source} both pair with image {record.image} (matched by "
                "file name, a Label Studio upload prefix ignored): which labels are right is unknown; remove one of "
                "them, or give the images their own names; nothing was imported"
            )
    return export


def _one_labelling_per_image(export: Export) -> Export:
    """Refuse one picture under two names (identical bytes) with different labels: stored, one would silently
    supersede the other. Only files of equal size are hashed; ones the store will refuse anyway are left to it."""
    by_size: dict[int, list[Record]] = {}
    for record in export.records:
        try:
            st = os.stat(record.image)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size <= MAX_IMAGE_BYTES:
            by_size.setdefault(st.st_size, []).append(record)
    for same_size in (group for group in by_size.values() if len(group) > 1):
        by_content: dict[str, Record] = {}
        for record in same_size:
            first = by_content.setdefault(file_sha256(record.image), record)
            if first is not record and _boxes(first.label_text) != _boxes(record.label_text):
                raise InvalidInput(
                    f"{first.image} and {record.image} are the same image (identical bytes) labelled differently "
                    f"({first.label_source}, {record.label_source}): which labels are right is unknown; remove one "
                    "of them; nothing was imported"
                )
    return export


def _boxes(label_text: str) -> list[list[str]]:
    """Label text's boxes in a comparable form (line order and spacing ignored)."""
    return sorted(line.split() for line in label_text.splitlines() if line.strip())


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
