"""Assemble a retraining dataset from a base Ultralytics dataset plus reviewers' corrections.

A built dataset is one folder per content digest under ``out_root``::

    <digest[:16]>/
        data.yaml                  path: <this folder>, train: images/train, val: images/val, names
        manifest.json              one entry per image (split, names, hashes, where image and label came from)
        images/{train,val}/<sha256[:16]><ext>   symlinks to the original image files (no bytes copied)
        labels/{train,val}/<sha256[:16]>.txt    label files, written fresh

Rules: a correction of a base image (same sha256) replaces its labels and keeps its split; any other
correction image is new and goes to val when ``int(sha[:8], 16) / 2**32 < holdout_fraction``, so no image
ever changes split between builds. The digest covers class names and each image's split, name, image hash
and label hash, not file locations: the same content always lands in the same folder, and a changed label
always lands in a new one, so Ultralytics' ``labels/*.cache`` can never serve stale labels.

Image hashes are kept in ``out_root/hash_cache.sqlite`` (path -> size, mtime_ns, sha256); only new or
changed files are read again.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import yaml
from ultralytics.data.utils import IMG_FORMATS, img2label_paths

from yolo_retrain.errors import InvalidInput

SPLITS = ("train", "val")
HASH_CACHE_NAME = "hash_cache.sqlite"
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")

Progress = Callable[[int, int], None]


class CorrectionLike(Protocol):
    """What the dataset needs of a stored correction (``yolo_retrain.store.Correction`` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def image_sha256(self) -> str: ...
    @property
    def image_path(self) -> str: ...
    @property
    def label_text(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


class BaseImage(NamedTuple):
    """One image of the base dataset; ``label`` is None when it has no label file (no objects)."""

    split: str
    image: Path
    label: Path | None


@dataclass(frozen=True)
class BaseDataset:
    """A validated base data.yaml: class names and every train/val image with its label file."""

    data_yaml: Path
    names: list[str]
    images: list[BaseImage]


@dataclass(frozen=True)
class BuiltDataset:
    """A built retraining dataset and what went into it."""

    root: Path
    data_yaml: Path
    manifest_path: Path
    digest: str
    holdout_digest: str  # the val split's content alone: unchanged holdout, comparable evaluations
    base_data: Path
    names: list[str]
    holdout_fraction: float
    counts: dict[str, int]
    corrections_applied: list[dict[str, Any]]
    superseded_corrections: list[str]
    hashed_files: int  # image files read and hashed by this build (the rest came from the hash cache)
    reused: bool  # True when the folder for this digest already existed
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def metadata(self) -> dict[str, Any]:
        """Everything about this build as JSON-serialisable data (for ``retraining_dataset_metadata.json``)."""
        return json.loads(json.dumps(asdict(self), default=_jsonable))


@dataclass(frozen=True)
class _Entry:
    """One image of the dataset being built."""

    split: str
    name: str  # file name in images/<split>/
    source: str  # absolute path of the original image
    image_sha256: str
    label: bytes
    label_source: str  # "base" | "correction"
    correction_id: str | None

    def manifest(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "image": self.name,
            "source_image": self.source,
            "image_sha256": self.image_sha256,
            "label_sha256": hashlib.sha256(self.label).hexdigest(),
            "label_source": self.label_source,
            "correction_id": self.correction_id,
        }


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_base_dataset(base_data: Path) -> BaseDataset:
    """Read and validate a detection data.yaml; list its train and val images with their label files.

    ``path`` (optional, relative to the yaml's folder) is the root; ``train`` and ``val`` are each a folder of
    images (searched recursively), a .txt list of image paths (relative lines are relative to the list's folder),
    or a list of these. Labels are found the Ultralytics way (last ``/images/`` -> ``/labels/``, suffix -> .txt).
    Raises InvalidInput naming the data.yaml and the offending key or path.
    """
    base_data = Path(os.path.abspath(base_data))
    if not base_data.is_file():
        raise InvalidInput(f"base data.yaml {base_data}: file not found")
    try:
        data = yaml.safe_load(base_data.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InvalidInput(f"base data.yaml {base_data}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise InvalidInput(f"base data.yaml {base_data}: must be a YAML mapping")
    for key in (*SPLITS, "names"):
        if data.get(key) is None:
            raise InvalidInput(f"base data.yaml {base_data}: key '{key}' is missing")
    root = base_data.parent / str(data["path"]) if data.get("path") else base_data.parent
    if not root.is_dir():
        raise InvalidInput(f"base data.yaml {base_data}: 'path' {root} is not a folder")
    names = _parse_names(data["names"], base_data)
    images: list[BaseImage] = []
    for split in SPLITS:
        files = _image_files(data[split], Path(os.path.normpath(root)), base_data, split)
        if not files:
            raise InvalidInput(f"base data.yaml {base_data}: '{split}' holds no images")
        for image, label in zip(files, img2label_paths(files), strict=True):
            images.append(BaseImage(split, Path(image), Path(label) if os.path.isfile(label) else None))
    return BaseDataset(base_data, names, images)


def build_dataset(
    base_data: Path,
    corrections: Sequence[CorrectionLike],
    out_root: Path,
    holdout_fraction: float = 0.1,
    progress: Progress | None = None,
) -> BuiltDataset:
    """Build (or reuse) the dataset of ``base_data`` plus ``corrections`` under ``out_root/<digest[:16]>``.

    Of several corrections of one image the newest ``created_at`` wins. Correction image hashes are trusted
    (the store computed them); base images are hashed through the cache. ``progress(done, total)`` reports
    hashing of base images (cached ones count as done at once). The folder is built beside its final place
    and renamed into it, so a half-built folder is never used; when it already exists it is reused, with
    symlinks re-pointed at the current image locations if the base dataset moved.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise InvalidInput(f"holdout_fraction {holdout_fraction}: must be in [0, 1)")
    base = load_base_dataset(base_data)
    out_root = Path(os.path.abspath(out_root))
    out_root.mkdir(parents=True, exist_ok=True)
    image_paths = [str(item.image) for item in base.images]
    hashes, hashed_files = _hash_files(image_paths, out_root / HASH_CACHE_NAME, progress)

    # Base images by content; an image found in both splits stays in val (the holdout never leaks into train).
    entries: dict[str, _Entry] = {}
    duplicates = 0
    for item in sorted(base.images, key=lambda i: i.split != "val"):
        sha = hashes[str(item.image)]
        if sha in entries:
            duplicates += 1
            continue
        label = item.label.read_bytes() if item.label else b""
        entries[sha] = _Entry(item.split, _link_name(sha, item.image), str(item.image), sha, label, "base", None)

    winners, superseded = _newest_per_image(corrections)
    applied = []
    for sha, corr in sorted(winners.items()):
        old = entries.get(sha)
        split = old.split if old else _hash_split(sha, holdout_fraction)
        source = old.source if old else os.path.abspath(corr.image_path)
        name = old.name if old else _link_name(sha, Path(source))
        entries[sha] = _Entry(split, name, source, sha, corr.label_text.encode(), "correction", corr.id)
        applied.append({"id": corr.id, "image_sha256": sha, "split": split, "replaced_base": old is not None})

    ordered = sorted(entries.values(), key=lambda e: (e.split, e.image_sha256))
    manifest = [e.manifest() for e in ordered]
    digest = _digest(base.names, manifest)
    root = out_root / digest[:16]
    reused = (root / "data.yaml").is_file()
    if reused:
        _refresh(root, ordered, manifest)
    else:
        _build_folder(root, ordered, manifest, base.names)

    overridden = sum(a["replaced_base"] for a in applied)
    counts = {
        "train_images": sum(e.split == "train" for e in ordered),
        "val_images": sum(e.split == "val" for e in ordered),
        "corrected_images": len(applied),
        "new_images": len(applied) - overridden,
        "overridden_base_images": overridden,
        "duplicate_base_images": duplicates,
        "total_boxes": sum(_count_boxes(e.label) for e in ordered),
    }
    return BuiltDataset(
        root=root,
        data_yaml=root / "data.yaml",
        manifest_path=root / "manifest.json",
        digest=digest,
        holdout_digest=_digest(base.names, [m for m in manifest if m["split"] == "val"]),
        base_data=base.data_yaml,
        names=base.names,
        holdout_fraction=holdout_fraction,
        counts=counts,
        corrections_applied=applied,
        superseded_corrections=sorted(superseded),
        hashed_files=hashed_files,
        reused=reused,
    )


# --- base data.yaml --------------------------------------------------------------------------------------------


def _parse_names(raw: Any, data_yaml: Path) -> list[str]:
    """Class names from a list or an ``{index: name}`` mapping with indices 0..n-1."""
    if isinstance(raw, dict):
        try:
            by_index = {int(k): str(v) for k, v in raw.items()}
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"base data.yaml {data_yaml}: 'names' keys must be class indices") from e
        if sorted(by_index) != list(range(len(by_index))):
            raise InvalidInput(f"base data.yaml {data_yaml}: 'names' indices must be 0..{len(by_index) - 1}")
        raw = [by_index[i] for i in range(len(by_index))]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(f"base data.yaml {data_yaml}: 'names' must be a non-empty list or mapping")
    return [str(n) for n in raw]


def _image_files(value: Any, root: Path, data_yaml: Path, key: str) -> list[str]:
    """Absolute paths of the images one train/val value points to (sorted, as Ultralytics lists them)."""
    sources = value if isinstance(value, list) else [value]
    if not all(isinstance(s, str) for s in sources):
        raise InvalidInput(f"base data.yaml {data_yaml}: '{key}' must be a path or a list of paths")
    files: list[str] = []
    for source in sources:
        path = os.path.normpath(root / source)
        if os.path.isdir(path):
            files += glob.glob(os.path.join(glob.escape(path), "**", "*.*"), recursive=True)
        elif os.path.isfile(path) and path.endswith(".txt"):
            listed = _listed_images(Path(path))
            missing = next((f for f in listed if not os.path.isfile(f) and _is_image(f)), None)
            if missing:
                raise InvalidInput(f"base data.yaml {data_yaml}: '{key}' list {path} names missing image {missing}")
            files += listed
        else:
            raise InvalidInput(f"base data.yaml {data_yaml}: '{key}' path {path} is not a folder or a .txt list")
    return sorted(f for f in files if _is_image(f))


def _listed_images(list_file: Path) -> list[str]:
    """Absolute image paths of a .txt image list; relative lines are taken relative to the list's folder."""
    lines = list_file.read_text(encoding="utf-8-sig").splitlines()
    return [os.path.normpath(list_file.parent / line.strip()) for line in lines if line.strip()]


def _is_image(path: str) -> bool:
    return path.rpartition(".")[-1].lower() in IMG_FORMATS


# --- hashing ---------------------------------------------------------------------------------------------------


def _hash_files(paths: list[str], cache_file: Path, progress: Progress | None) -> tuple[dict[str, str], int]:
    """sha256 of every path, reading only files whose size or mtime differs from the cache; also the number read."""
    with closing(sqlite3.connect(cache_file, timeout=60)) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS file_hash"
            " (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)"
        )
        cached = {row[0]: row[1:] for row in db.execute("SELECT path, size, mtime_ns, sha256 FROM file_hash")}
        hashes: dict[str, str] = {}
        todo: dict[str, tuple[int, int]] = {}
        for path in dict.fromkeys(paths):
            st = os.stat(path)
            hit = cached.get(path)
            if hit and hit[:2] == (st.st_size, st.st_mtime_ns):
                hashes[path] = hit[2]
            else:
                todo[path] = (st.st_size, st.st_mtime_ns)
        total, done = len(hashes) + len(todo), len(hashes)
        if progress:
            progress(done, total)
        with ThreadPoolExecutor() as pool:
            futures = {pool.submit(file_sha256, path): path for path in todo}
            for future in as_completed(futures):
                hashes[futures[future]] = future.result()
                done += 1
                if progress:
                    progress(done, total)
        with db:
            db.executemany(
                "INSERT OR REPLACE INTO file_hash VALUES (?, ?, ?, ?)",
                ((p, size, mtime, hashes[p]) for p, (size, mtime) in todo.items()),
            )
    return hashes, len(todo)


# --- corrections -----------------------------------------------------------------------------------------------


def _newest_per_image(corrections: Iterable[CorrectionLike]) -> tuple[dict[str, CorrectionLike], list[str]]:
    """The newest correction of each image (ties broken by id) and the ids of the ones they supersede."""
    winners: dict[str, CorrectionLike] = {}
    superseded: list[str] = []
    for corr in corrections:
        if not _SHA256.fullmatch(corr.image_sha256):
            raise InvalidInput(f"correction {corr.id}: image_sha256 {corr.image_sha256!r} is not a sha256 hex digest")
        if not _is_image(corr.image_path) or not os.path.isfile(corr.image_path):
            raise InvalidInput(f"correction {corr.id}: image {corr.image_path} is missing or not an image file")
        current = winners.get(corr.image_sha256)
        if current is None:
            winners[corr.image_sha256] = corr
            continue
        newer, older = sorted((current, corr), key=lambda c: (c.created_at, c.id), reverse=True)
        winners[corr.image_sha256] = newer
        superseded.append(older.id)
    return winners, superseded


def _hash_split(image_sha256: str, holdout_fraction: float) -> str:
    """Split of a new image, fixed by its hash."""
    return "val" if int(image_sha256[:8], 16) / 2**32 < holdout_fraction else "train"


# --- the dataset folder ----------------------------------------------------------------------------------------


def _link_name(image_sha256: str, image: Path) -> str:
    return f"{image_sha256[:16]}{image.suffix.lower()}"


def _digest(names: list[str], manifest: list[dict[str, Any]]) -> str:
    """sha256 of the dataset's content: class names and each image's split, name, image hash and label hash."""
    content_keys = ("split", "image", "image_sha256", "label_sha256")
    content = {"names": names, "images": [{k: e[k] for k in content_keys} for e in manifest]}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _build_folder(root: Path, entries: list[_Entry], manifest: list[dict[str, Any]], names: list[str]) -> None:
    """Write the dataset into a temporary sibling folder, then rename it to ``root`` in one step."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for kind in ("images", "labels"):
            for split in SPLITS:
                (tmp / kind / split).mkdir(parents=True)
        for e in entries:
            os.symlink(e.source, tmp / "images" / e.split / e.name)
            (tmp / "labels" / e.split / f"{Path(e.name).stem}.txt").write_bytes(e.label)
        _write_json(tmp / "manifest.json", manifest)
        data = {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(names))}
        (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        if root.exists() and not (root / "data.yaml").exists():
            shutil.rmtree(root)  # left by something else: complete folders only ever appear by rename
        try:
            os.replace(tmp, root)
        except OSError:
            if not (root / "data.yaml").is_file():
                raise
            # another build of the same content won the race: its folder is identical
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _refresh(root: Path, entries: list[_Entry], manifest: list[dict[str, Any]]) -> None:
    """Re-point symlinks of a reused folder at the images' current locations and record them in the manifest."""
    for e in entries:
        link = root / "images" / e.split / e.name
        if not link.is_symlink() or os.readlink(link) != e.source:
            tmp = link.with_name(f".{e.name}.{os.getpid()}.tmp")
            os.symlink(e.source, tmp)
            os.replace(tmp, link)
    if json.loads((root / "manifest.json").read_text(encoding="utf-8")) != manifest:
        _write_json(root / "manifest.json", manifest)


def _write_json(path: Path, value: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _jsonable(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _count_boxes(label: bytes) -> int:
    return sum(1 for line in label.splitlines() if line.strip())
