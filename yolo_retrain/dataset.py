"""Assemble a retraining dataset from a base Ultralytics dataset plus reviewers' corrections.

Layout under ``out_root``::

    <digest[:16]>/                  one dataset, named by the digest of its content
        data.yaml                     path: <this folder>, train: train.txt, val: val.txt, names
        train.txt, val.txt            every image's path, all inside this folder (Ultralytics reads image lists)
        manifest.json                 one entry per image (split, name, hashes, where image and label came from)
        b/<n>/{images,labels}         links to the base dataset's folders: unchanged base images are read in place
        c -> ../corrected             corrected and new images
        0/{images,labels}/<split>/    the first image of each split (see below)
    corrected/<xx>/{images,labels}/   one image link + label file per corrected image, named by the hash of image,
                                      label and location: written once, shared by every dataset that has it
    hash_cache.sqlite                 path -> size, mtime_ns, sha256: only new or changed files are read again

No image byte is copied, and a build writes files only for corrected images it has not seen before: a rebuild
after 100 new corrections writes 200 small files, two lists and the manifest. A changed label always gets a new
path. Ultralytics keeps its label cache beside the label of the first listed image (in sorted order); ``0/``
sorts first, so every dataset has a cache of its own, and a changed label is never served from a stale one.

Rules: a correction of a base image (same sha256) replaces its labels and keeps its split; any other correction image
is new and goes to val when ``int(sha[:8], 16) / 2**32 < holdout_fraction``, so no image ever changes split between
builds. The digest covers class names and each image's split, name, image hash and label hash, not file locations:
the same content always lands in the same dataset folder (its links re-pointed if the base moved). Base files are
read where they are: a base file changed in place gets a new hash (size or mtime changed) and so a new dataset.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, NamedTuple, Protocol, Self

import yaml

from yolo_retrain.data_yaml import is_image as _is_image
from yolo_retrain.data_yaml import label_path, load_data_yaml
from yolo_retrain.errors import InvalidInput
from yolo_retrain.hashing import file_sha256

SPLITS = ("train", "val")
HASH_CACHE_NAME = "hash_cache.sqlite"
CORRECTED_DIR = "corrected"
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
    """One image of the base dataset (absolute paths); ``label`` is None when it has no label file (no objects)."""

    split: str
    image: str
    name: str  # the image's file name
    label: str | None


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
    # One entry per correction in the dataset (id, image_sha256, split, replaced_base, origin), as JSON text: the
    # flow hands this record to several tasks, and Prefect walks every list and dict of a task's inputs (at
    # 10 000 accepted corrections ~0.3 s a task); a string it does not walk. Read it as ``corrections_applied``.
    corrections_applied_json: str
    superseded_corrections: list[str]
    hashed_files: int  # image files read and hashed by this build (the rest came from the hash cache)
    reused: bool  # True when the folder for this digest already existed
    corrected_written: int = 0  # corrected images this build wrote into the corrected store (the rest were there)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def corrections_applied(self) -> list[dict[str, Any]]:
        """Each correction in the dataset: id, image_sha256, split, replaced_base, origin (batch or earlier)."""
        return json.loads(self.corrections_applied_json)

    def metadata(self) -> dict[str, Any]:
        """Everything about this build as JSON-serialisable data (for ``retraining_dataset_metadata.json``)."""
        data = asdict(self)
        data["corrections_applied"] = json.loads(data.pop("corrections_applied_json"))
        return json.loads(json.dumps(data, default=_jsonable))


class _Entry(NamedTuple):
    """One image of the dataset being built."""

    split: str
    name: str  # file name as listed: the base file's own, or <sha256[:16]><ext> for a corrected image
    source: str  # absolute path of the original image
    image_sha256: str
    label_sha256: str
    boxes: int
    label_source: str  # "base" | "correction"
    correction_id: str | None
    label_path: str | None  # the base label file, read only if this image anchors a split
    label_text: bytes | None  # a correction's labels

    def label_bytes(self) -> bytes:
        if self.label_text is not None:
            return self.label_text
        if self.label_path is None:
            return b""
        with open(self.label_path, "rb") as f:
            return f.read()




def load_base_dataset(base_data: Path) -> BaseDataset:
    """Read and validate a detection data.yaml (resolved as Ultralytics does: ``yolo_retrain.data_yaml``); list its
    train and val images with their label files (the Ultralytics way: last ``/images/`` -> ``/labels/``, .txt).

    Raises InvalidInput naming the data.yaml and the offending key or path.
    """
    data = load_data_yaml(base_data, "base data.yaml")
    label_files: dict[str, tuple[str, frozenset[str]]] = {}  # image folder -> (label folder, its file names)
    images: list[BaseImage] = []
    for split in SPLITS:
        files = data.images(split)
        if not files:
            raise InvalidInput(f"{data.describe()}: '{split}' holds no images")
        for image in files:
            folder, _, name = image.rpartition("/")
            labels = label_files.get(folder)
            if labels is None:  # one listing per folder, not one stat per image
                label_folder = label_path(image).rpartition("/")[0]
                labels = label_files[folder] = (label_folder, _files_in(label_folder))
            label = f"{name.rpartition('.')[0]}.txt"
            images.append(BaseImage(split, image, name, f"{labels[0]}/{label}" if label in labels[1] else None))
    return BaseDataset(data.path, data.names, images)


def build_dataset(
    base_data: Path,
    corrections: Sequence[CorrectionLike],
    out_root: Path,
    holdout_fraction: float = 0.1,
    progress: Progress | None = None,
    *,
    accepted: Sequence[CorrectionLike] = (),
    held_rejected: int = 0,
) -> BuiltDataset:
    """Build (or reuse) the dataset of ``base_data`` plus ``accepted`` and ``corrections`` under ``out_root/<digest[:16]>``.

    ``corrections`` is this retrain's batch, ``accepted`` the corrections earlier retrains (or a person) accepted;
    ``held_rejected`` (rejected corrections left out) is only recorded. Of several corrections of one image the
    newest ``created_at`` wins, wherever it came from. Correction image hashes are trusted
    (the store computed them); base images and labels are hashed through the cache. ``progress(done, total)``
    reports hashing of base images (cached ones count as done at once). The dataset folder is written beside its
    final place and renamed into it, so a half-written one is never used; a corrected image's link is made only
    once its label file is complete.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise InvalidInput(f"holdout_fraction {holdout_fraction}: must be in [0, 1)")
    with _collector_paused():
        sources = _Sources([*accepted, *corrections], {c.id for c in corrections}, held_rejected)
        return _build(Path(base_data), sources, Path(out_root), holdout_fraction, progress)


class _Sources(NamedTuple):
    """The corrections of one build: every one, which of them are this retrain's batch, how many are held out."""

    corrections: Sequence[CorrectionLike]
    batch_ids: set[str]  # the others were accepted by earlier retrains
    held_rejected: int


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A build makes a few objects per image and no reference cycles: the cyclic garbage collector would only
    walk them again and again (~8 % of a rebuild at 100 000 images)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _build(
    base_data: Path,
    sources: _Sources,
    out_root: Path,
    holdout_fraction: float,
    progress: Progress | None,
) -> BuiltDataset:
    base = load_base_dataset(base_data)
    out_root = Path(os.path.abspath(out_root))
    out_root.mkdir(parents=True, exist_ok=True)
    with _HashCache(out_root / HASH_CACHE_NAME) as cache:
        facts, hashed_files = cache.facts(base.images, progress)

    # Base images by content; an image found in both splits stays in val (the holdout never leaks into train).
    entries: dict[str, _Entry] = {}
    duplicates = 0
    for item in [i for i in base.images if i.split == "val"] + [i for i in base.images if i.split != "val"]:
        sha, label_sha, boxes = facts[item.image]
        if sha in entries:
            duplicates += 1
            continue
        entries[sha] = _Entry(item.split, item.name, item.image, sha, label_sha, boxes, "base", None, item.label, None)

    winners, superseded = _newest_per_image(sources.corrections)
    applied = []
    for sha, corr in sorted(winners.items()):
        old = entries.get(sha)
        split = old.split if old else _hash_split(sha, holdout_fraction)
        source = old.source if old else os.path.abspath(corr.image_path)
        name = _link_name(sha, source)
        text = corr.label_text.encode()
        label_sha = hashlib.sha256(text).hexdigest()
        entries[sha] = _Entry(
            split, name, source, sha, label_sha, _count_boxes(text), "correction", corr.id, None, text
        )
        origin = "batch" if corr.id in sources.batch_ids else "earlier"
        applied.append({"id": corr.id, "image_sha256": sha, "split": split, "replaced_base": old is not None, "origin": origin})

    by_hash = [entries[sha] for sha in sorted(entries)]
    train, val = ([e for e in by_hash if e.split == split] for split in SPLITS)
    ordered = train + val
    digest = _digest(base.names, ordered)
    root = out_root / digest[:16]
    placement = _place(ordered, out_root / CORRECTED_DIR)
    corrected_written = _write_corrected(out_root / CORRECTED_DIR, placement.corrected)
    data_yaml = {"path": str(root), "train": "train.txt", "val": "val.txt", "names": dict(enumerate(base.names))}
    files = {
        **placement.files,
        "train.txt": _image_list(root, placement.listed[: len(train)]),
        "val.txt": _image_list(root, placement.listed[len(train) :]),
        "manifest.json": _manifest_text(ordered, placement.listed).encode(),
        "data.yaml": yaml.safe_dump(data_yaml, sort_keys=False, allow_unicode=True).encode(),
    }
    reused = (root / "data.yaml").is_file()
    if reused:
        _refresh(root, files, placement.links)
    else:
        _write_dataset_folder(root, files, placement.links)

    overridden = sum(a["replaced_base"] for a in applied)
    from_batch = sum(a["origin"] == "batch" for a in applied)
    counts = {
        "train_images": len(train),
        "val_images": len(val),
        "corrected_images": len(applied),
        "new_images": len(applied) - overridden,
        "overridden_base_images": overridden,
        "duplicate_base_images": duplicates,
        "total_boxes": sum(e.boxes for e in ordered),
        "corrections_from_this_batch": from_batch,
        "corrections_from_earlier_retrains": len(applied) - from_batch,
        "corrections_held_rejected": sources.held_rejected,  # recorded only: rejected corrections are not in it
    }
    return BuiltDataset(
        root=root,
        data_yaml=root / "data.yaml",
        manifest_path=root / "manifest.json",
        digest=digest,
        holdout_digest=_digest(base.names, val),
        base_data=base.data_yaml,
        names=base.names,
        holdout_fraction=holdout_fraction,
        counts=counts,
        corrections_applied_json=json.dumps(applied),
        superseded_corrections=sorted(superseded),
        hashed_files=hashed_files,
        reused=reused,
        corrected_written=corrected_written,
    )


# --- base data.yaml (read by yolo_retrain.data_yaml) ---------------------------------------------------------


def _files_in(folder: str) -> frozenset[str]:
    """Names of the files in ``folder`` (none if it does not exist)."""
    try:
        with os.scandir(folder) as it:
            return frozenset(e.name for e in it if e.is_file())
    except OSError:
        return frozenset()


# --- hashing ---------------------------------------------------------------------------------------------------

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class _HashCache:
    """sha256 of each base image and of its label file (and the label's number of boxes), kept by path, size and
    mtime_ns of both: only new or changed files are read again. One row per image: one lookup per image."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, timeout=60)

    def __enter__(self) -> Self:
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS base_files (image TEXT PRIMARY KEY, image_size INTEGER NOT NULL,"
            " image_mtime_ns INTEGER NOT NULL, image_sha256 TEXT NOT NULL,"
            " label_size INTEGER, label_mtime_ns INTEGER, label_sha256 TEXT, boxes INTEGER)"
        )
        self._cached = {row[0]: row for row in self._db.execute("SELECT * FROM base_files")}
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def facts(self, images: list[BaseImage], progress: Progress | None) -> tuple[dict[str, tuple[str, str, int]], int]:
        """Image path -> (image sha256, label sha256, boxes), and how many images had to be read and hashed."""
        known: dict[str, tuple[str, str, int]] = {}
        todo: list[tuple[BaseImage, os.stat_result, os.stat_result | None, tuple | None]] = []
        for item in {i.image: i for i in images}.values():
            st, lst = os.stat(item.image), os.stat(item.label) if item.label else None
            hit = self._cached.get(item.image)  # (image, size, mtime_ns, sha256, label size, mtime_ns, sha256, boxes)
            if (
                hit is not None
                and hit[1] == st.st_size
                and hit[2] == st.st_mtime_ns
                and (hit[4] == lst.st_size and hit[5] == lst.st_mtime_ns if lst else hit[4] is None)
            ):
                known[item.image] = (hit[3], hit[6] or _EMPTY_SHA256, hit[7] or 0)
            else:
                todo.append((item, st, lst, hit))
        total = len(known) + len(todo)
        if progress:
            progress(len(known), total)
        rows = []
        # Chunks, not one future per file: most files are small, and per-file futures cost more than the hashing.
        chunks = [todo[i : i + 256] for i in range(0, len(todo), 256)]
        with ThreadPoolExecutor() as pool:
            for chunk_rows in pool.map(lambda chunk: [_read_base_files(*t) for t in chunk], chunks):
                rows += chunk_rows
                known.update((row[0], (row[3], row[6] or _EMPTY_SHA256, row[7] or 0)) for row in chunk_rows)
                if progress:
                    progress(len(known), total)
        if rows:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO base_files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        images_read = sum(hit is None or hit[1:3] != (st.st_size, st.st_mtime_ns) for _, st, _, hit in todo)
        return known, images_read


def _read_base_files(item: BaseImage, st: os.stat_result, lst: os.stat_result | None, hit: tuple | None) -> tuple:
    """A fresh cache row for one base image: whichever of image and label changed is read again."""
    if hit is not None and hit[1:3] == (st.st_size, st.st_mtime_ns):
        image_sha = hit[3]
    else:
        image_sha = file_sha256(item.image)
    if lst is None:
        return (item.image, st.st_size, st.st_mtime_ns, image_sha, None, None, None, 0)
    if hit is not None and hit[4:6] == (lst.st_size, lst.st_mtime_ns):
        label_sha, boxes = hit[6], hit[7]
    else:
        with open(item.label, "rb") as f:
            data = f.read()
        label_sha, boxes = hashlib.sha256(data).hexdigest(), _count_boxes(data)
    return (item.image, st.st_size, st.st_mtime_ns, image_sha, lst.st_size, lst.st_mtime_ns, label_sha, boxes)


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


# --- the dataset folder and the corrected store -----------------------------------------------------------------------


def _link_name(image_sha256: str, image: str) -> str:
    return f"{image_sha256[:16]}.{image.rpartition('.')[-1].lower()}"


def _digest(names: list[str], entries: Iterable[_Entry]) -> str:
    """sha256 of the dataset's content: class names and each image's split, name, image hash and label hash."""
    content = hashlib.sha256(json.dumps(names).encode())
    content.update("".join(f"\n{e.split}\t{e.name}\t{e.image_sha256}\t{e.label_sha256}" for e in entries).encode())
    return content.hexdigest()


class _Placement(NamedTuple):
    """Where each image of a dataset is listed, and what its folder holds besides lists and manifest."""

    listed: list[str]  # per entry of ``ordered``, relative to the dataset folder
    links: dict[str, str]  # symlinks in the dataset folder: relative path -> target
    files: dict[str, bytes]  # the anchors' label files: relative path -> content
    corrected: dict[str, _Entry]  # corrected images by their path in the corrected store, relative to it


def _place(ordered: list[_Entry], corrected_root: Path) -> _Placement:
    """List base images in place, corrected ones from the corrected store, the first of each split from ``0/``.

    Ultralytics sorts the listed paths and keeps its label cache beside the first one's label: ``0/`` sorts before
    ``b/`` and ``c/``, so each dataset has its own cache, and a cache can never hold another dataset's labels.
    """
    anchors = {e.split: e for e in reversed(ordered)}
    links = {"c": str(corrected_root)}
    base_folders: dict[str, str] = {}
    files: dict[str, bytes] = {}
    corrected: dict[str, _Entry] = {}
    listed: list[str] = []
    for e in ordered:
        if anchors[e.split] is e:
            listed.append(f"0/images/{e.split}/{e.name}")
            links[listed[-1]] = e.source
            files[f"0/labels/{e.split}/{e.name.rpartition('.')[0]}.txt"] = e.label_bytes()
        elif e.label_source == "correction":
            # Named by image, label and location: a changed label is a new path, the same one is never rewritten.
            key = hashlib.sha256(f"{e.image_sha256}\t{e.label_sha256}\t{e.source}".encode()).hexdigest()[:32]
            path = f"{key[:2]}/images/{key}.{e.name.rpartition('.')[-1]}"
            corrected[path] = e
            listed.append(f"c/{path}")
        else:
            folder = e.source.rpartition("/")[0]
            if folder not in base_folders:
                base_folders[folder] = f"b/{len(base_folders)}"
                links[f"{base_folders[folder]}/images"] = folder
                links[f"{base_folders[folder]}/labels"] = label_path(e.source).rpartition("/")[0]
            listed.append(f"{base_folders[folder]}/images/{e.name}")
    return _Placement(listed, links, files, corrected)


def _write_corrected(corrected_root: Path, corrected: dict[str, _Entry]) -> int:
    """Write the corrected images not in the store yet (label file, then image link); returns how many."""
    missing = [(path, e) for path, e in corrected.items() if not os.path.lexists(f"{corrected_root}/{path}")]
    for folder in {path.partition("/")[0] for path, _ in missing}:
        os.makedirs(corrected_root / folder / "images", exist_ok=True)
        os.makedirs(corrected_root / folder / "labels", exist_ok=True)
    chunks = [missing[i : i + 256] for i in range(0, len(missing), 256)]
    with ThreadPoolExecutor(4) as pool:  # file creation waits on the filesystem more than on the GIL
        list(pool.map(lambda chunk: [_write_pair(str(corrected_root / path), e) for path, e in chunk], chunks))
    return len(missing)


def _write_pair(image: str, e: _Entry) -> None:
    """The image link exists only once its label is complete: a pair is whole or written again. (Builds into one
    folder never overlap: the flow builds under the retrain lock, ``recovery.retrain_lock``.)"""
    with open(label_path(image), "wb") as f:
        f.write(e.label_bytes())
    try:
        os.symlink(e.source, image)
    except FileExistsError:
        pass  # another build wrote the same pair: same name, same content


def _image_list(root: Path, listed: list[str]) -> bytes:
    """``train.txt`` / ``val.txt``: absolute paths, one per line, as Ultralytics reads image lists."""
    return "".join(f"{root}/{path}\n" for path in listed).encode()


def _manifest_text(ordered: list[_Entry], listed: list[str]) -> str:
    """The manifest as JSON, one entry per line: split, image (the file name as listed), source_image, image_sha256,
    label_sha256, label_source (base or correction), correction_id, path (as listed, relative to the folder).

    Written line by line with the json module's own string escaping: 2-3 times faster than encoding dicts, which
    counts at 100 000 images; a test checks that ``json.loads`` reads back every entry."""
    q = encode_basestring
    return (
        "[\n"
        + ",\n".join(
            f'{{"split": "{e.split}", "image": {q(e.name)}, "source_image": {q(e.source)},'
            f' "image_sha256": "{e.image_sha256}", "label_sha256": "{e.label_sha256}",'
            f' "label_source": "{e.label_source}",'
            f' "correction_id": {"null" if e.correction_id is None else q(e.correction_id)}, "path": {q(path)}}}'
            for e, path in zip(ordered, listed, strict=True)
        )
        + "\n]\n"
    )


def _write_dataset_folder(root: Path, files: dict[str, bytes], links: dict[str, str]) -> None:
    """Write the dataset folder into a temporary sibling, then rename it to ``root`` in one step; ``data.yaml``
    (which marks a complete folder) is among ``files``."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for name, target in links.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, tmp / name)
        for name, content in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(content)
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


def _refresh(root: Path, files: dict[str, bytes], links: dict[str, str]) -> None:
    """Bring a reused folder up to date (images moved, a new correction id for the same labels): each link and
    file that differs is replaced atomically."""
    for name, target in links.items():
        path = root / name
        if not path.is_symlink() or os.readlink(path) != target:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            os.symlink(target, tmp)
            os.replace(tmp, path)
    for name, content in files.items():
        path = root / name
        try:
            current = path.read_bytes()
        except FileNotFoundError:
            current = None
        if current != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(content)
            os.replace(tmp, path)


def _jsonable(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _count_boxes(label: bytes) -> int:
    return sum(1 for line in label.splitlines() if line.strip())
