"""The images a selection considers: files named on the command line (folders, globs, list files) and the samples
posted to the intake."""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from yolo_retrain.errors import InvalidInput
from yolo_retrain.labelstudio.convert import ScoredBox

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
LIST_EXTENSIONS = {".txt", ".list", ".csv"}


@dataclass(frozen=True)
class PoolImage:
    name: str
    path: Path
    source: str  # folder | intake
    sample_id: str | None = None
    production: list[ScoredBox] | None = None  # the production model's boxes, when posted


def images_from(sources: Sequence[str]) -> list[PoolImage]:
    """Every image the ``sources`` name, once each, in a stable order: a folder (recursively), a glob (``'cams/*.jpg'``),
    a list file (one path a line, relative to the list's folder; ``#`` comments), or an image file.

    Refused with InvalidInput naming the source and the reason: a path that does not exist, a glob that matches no
    image, a list naming a missing file (with its line), a file that is neither an image nor a list.
    """
    seen: dict[Path, PoolImage] = {}
    for source in sources:
        for path in _expand(source):
            resolved = path.resolve()
            seen.setdefault(resolved, PoolImage(str(path), resolved, "folder"))
    return list(seen.values())


def _expand(source: str) -> Iterable[Path]:
    if any(ch in source for ch in "*?["):
        matched = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).suffix.lower() in IMAGE_EXTENSIONS and Path(p).is_file())
        if not matched:
            raise InvalidInput(f"{source}: the pattern matches no image ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return matched
    path = Path(source)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not path.exists():
        raise InvalidInput(f"{source}: no such file or folder")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return [path]
    if path.suffix.lower() in LIST_EXTENSIONS:
        return list(_listed(path))
    raise InvalidInput(f"{source}: neither an image ({', '.join(sorted(IMAGE_EXTENSIONS))}), a folder, a glob nor a list file (.txt)")


def _listed(list_file: Path) -> Iterator[Path]:
    for number, line in enumerate(list_file.read_text(errors="replace").splitlines(), 1):
        entry = line.split(",")[0].strip() if list_file.suffix.lower() == ".csv" else line.strip()
        if not entry or entry.startswith("#") or (list_file.suffix.lower() == ".csv" and number == 1 and not Path(entry).suffix):
            continue  # blank, a comment, a CSV header
        path = Path(entry) if Path(entry).is_absolute() else list_file.parent / entry
        if not path.is_file():
            raise InvalidInput(f"{list_file}:{number}: {entry}: no such file")
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise InvalidInput(f"{list_file}:{number}: {entry}: not an image ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        yield path
