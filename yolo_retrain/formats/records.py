"""What every format reader yields, and the small helpers they share."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from yolo_retrain.data_yaml import MAX_CONFIG_BYTES, class_names, is_image
from yolo_retrain.errors import InvalidInput
from yolo_retrain.files import read_text_bounded
from yolo_retrain.labels import read_label_file

YAML_SUFFIXES = (".yaml", ".yml")
_LISTED = 10  # names listed in a message before "and N more"


@dataclass(frozen=True)
class Record:
    """One image of an export and its labels, with the export's own class ids."""

    image: Path
    label_text: str
    label_source: str  # the label file, for messages ("<image>: no label file" when the image has none)


@dataclass(frozen=True)
class Export:
    """An export as a labelling tool wrote it: its format, its class names (None: ids only) and its images."""

    format: str
    root: Path
    class_names: list[str] | None
    names_source: str | None  # the file the class names came from (or that would name them: a data.yaml)
    records: list[Record] = field(default_factory=list)


def visible_files(folder: Path) -> list[Path]:
    """Files directly in ``folder``, hidden ones (``.DS_Store``...) skipped, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def images_in(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by suffix, as Ultralytics picks them), sorted."""
    return [p for p in visible_files(folder) if is_image(p.name)]


def labels_of(image: Path, label: Path) -> Record:
    """The record of ``image``: its label file's text, or no objects when it has none.

    Only a label file that is not there means no objects: one (or its folder) that cannot be read (a file or a
    dangling link where the folder should be, a link loop) is refused naming it, never stored as "no objects".
    """
    if _absent(label):
        return Record(image, "", f"{image}: no label file (no objects)")
    return Record(image, read_label_file(label), str(label))


def _absent(label: Path) -> bool:
    """True if neither ``label`` nor its folder is there; InvalidInput if either is there but cannot be read."""
    try:
        os.stat(label)
        return False
    except FileNotFoundError:
        pass
    except OSError as exc:  # ENOTDIR, ELOOP, EACCES, EIO: there is something, unreadable
        raise InvalidInput(f"{label}: cannot read label file ({exc.strerror or exc})") from exc
    for path in (label, label.parent):
        if os.path.lexists(path) and not os.path.exists(path):
            raise InvalidInput(f"{path}: cannot read label file or folder (a link to something that does not exist)")
    return True


def names_file(path: Path) -> list[str]:
    """Class names of a one-name-a-line file (``obj.names``, ``classes.txt``), blank lines skipped."""
    lines = read_text_bounded(path, MAX_CONFIG_BYTES, "class names file").splitlines()
    return class_names([line.strip() for line in lines if line.strip()], str(path))


def find_yaml(root: Path) -> Path | None:
    """The data.yaml of an export: ``root`` itself if it is one, else ``root/data.yaml``, else its only yaml."""
    if root.is_file():
        return root if root.suffix.lower() in YAML_SUFFIXES else None
    if (root / "data.yaml").is_file():
        return root / "data.yaml"
    found = [p for p in visible_files(root) if p.suffix.lower() in YAML_SUFFIXES]
    return found[0] if len(found) == 1 else None


def listing(items: list[str]) -> str:
    """``a, b, c`` or ``a, b, ... and 12 more``."""
    shown = ", ".join(items[:_LISTED])
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


class ImageFinder:
    """Images of a folder (``--images DIR``, searched recursively) by file stem, for exports without images."""

    # Label Studio names an uploaded file <8 hex digits>-<original name>; its label files keep that prefix.
    _UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._by_stem: dict[str, list[Path]] = {}
        if folder is None:
            return
        if not folder.is_dir():
            raise InvalidInput(f"--images {folder}: not a folder")
        for path in sorted(folder.rglob("*")):
            if path.is_file() and is_image(path.name) and not path.name.startswith("."):
                self._by_stem.setdefault(path.stem, []).append(path)

    def find(self, stem: str) -> Path | None:
        """The image named ``stem`` (or, for a Label Studio upload, the name after its prefix); None if absent."""
        for candidate in (stem, self._UPLOAD_PREFIX.sub("", stem)):
            found = self._by_stem.get(candidate, [])
            if len(found) > 1:
                raise InvalidInput(
                    f"--images {self.folder}: {len(found)} images are named {candidate}: "
                    f"{listing([str(p) for p in found])} (which one the labels are for is unknown)"
                )
            if found:
                return found[0]
        return None


def refuse_missing(missing: list[str], looked_in: list[Path | None]) -> None:
    """Refuse an export whose label files have no image, listing them and where they were looked for."""
    if not missing:
        return
    where = " and ".join(str(p) for p in looked_in if p is not None) or "the export"
    hint = "" if looked_in[-1] is not None else "; pass --images DIR, the folder that holds them"
    raise InvalidInput(f"{len(missing)} label files have no image (looked in {where}): {listing(missing)}{hint}")
