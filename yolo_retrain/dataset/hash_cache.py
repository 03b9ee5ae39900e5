"""sha256 of each base image and label file, cached by path, size and mtime: a rebuild reads only what changed."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import NamedTuple, Self

from yolo_retrain.dataset.base import BaseImage
from yolo_retrain.errors import InvalidInput
from yolo_retrain.hashing import file_sha256
from yolo_retrain.labels import MAX_LABEL_BYTES

HASH_CACHE_NAME = "hash_cache.sqlite"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

Progress = Callable[[int, int], None]


class BaseFile(NamedTuple):
    """What the cache knows of one base image (one row): the stamps (size, mtime) that say whether it is still
    valid, the image's sha256, its label's sha256 and box count. ``label_size`` is None when there is no label
    file (no objects); ``label_sha256`` is then the empty label's."""

    image: str
    image_size: int
    image_mtime_ns: int
    image_sha256: str
    label_size: int | None
    label_mtime_ns: int | None
    label_sha256: str
    boxes: int


# A row straight from SQLite into a BaseFile, without a Python-level call per row (100 000 rows per rebuild).
_row_to_base_file = partial(tuple.__new__, BaseFile)


class _Stale(NamedTuple):
    """A base image whose cached row is missing or out of date, with what ``os.stat`` said of its files."""

    item: BaseImage
    image_stat: os.stat_result
    label_stat: os.stat_result | None
    cached: BaseFile | None


class HashCache:
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
        rows = self._db.execute(
            "SELECT image, image_size, image_mtime_ns, image_sha256, label_size, label_mtime_ns,"
            " COALESCE(label_sha256, ?), COALESCE(boxes, 0) FROM base_files",
            (EMPTY_SHA256,),
        )
        self._cached = {row.image: row for row in map(_row_to_base_file, rows)}
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def facts(self, images: list[BaseImage], progress: Progress | None) -> tuple[dict[str, BaseFile], int]:
        """Image path -> what is known of it (read again where size or mtime changed), and how many images had to
        be read and hashed."""
        known: dict[str, BaseFile] = {}
        stale: list[_Stale] = []
        stat, cached_row = os.stat, self._cached.get
        for item in {i.image: i for i in images}.values():
            st = stat(item.image)
            lst = stat(item.label) if item.label else None
            row = cached_row(item.image)
            # _same_stamp and its label twin, inline: this loop runs once per base image
            if (
                row is not None
                and row.image_size == st.st_size
                and row.image_mtime_ns == st.st_mtime_ns
                and (
                    row.label_size == lst.st_size and row.label_mtime_ns == lst.st_mtime_ns
                    if lst is not None
                    else row.label_size is None
                )
            ):
                known[item.image] = row
            else:
                stale.append(_Stale(item, st, lst, row))
        total = len(known) + len(stale)
        if progress:
            progress(len(known), total)
        rows: list[BaseFile] = []
        # Chunks, not one future per file: most files are small, and per-file futures cost more than the hashing.
        chunks = [stale[i : i + 256] for i in range(0, len(stale), 256)]
        with ThreadPoolExecutor() as pool:
            for chunk_rows in pool.map(lambda chunk: [_fresh_row(s) for s in chunk], chunks):
                rows += chunk_rows
                known.update((row.image, row) for row in chunk_rows)
                if progress:
                    progress(len(known), total)
        if rows:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO base_files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        images_read = sum(s.cached is None or not _same_stamp(s.cached, s.image_stat) for s in stale)
        return known, images_read


def _same_stamp(row: BaseFile, st: os.stat_result) -> bool:
    """The image file is as the cache saw it (same size and mtime)."""
    return row.image_size == st.st_size and row.image_mtime_ns == st.st_mtime_ns


def _fresh_row(stale: _Stale) -> BaseFile:
    """A fresh cache row for one base image: whichever of image and label changed is read again."""
    item, st, lst, cached = stale
    image_sha = cached.image_sha256 if cached and _same_stamp(cached, st) else file_sha256(item.image)
    if lst is None:
        return BaseFile(item.image, st.st_size, st.st_mtime_ns, image_sha, None, None, EMPTY_SHA256, 0)
    if cached is not None and (cached.label_size, cached.label_mtime_ns) == (lst.st_size, lst.st_mtime_ns):
        label_sha, boxes = cached.label_sha256, cached.boxes
    else:
        data = _read_label(item.label)
        label_sha, boxes = hashlib.sha256(data).hexdigest(), count_boxes(data)
    return BaseFile(item.image, st.st_size, st.st_mtime_ns, image_sha, lst.st_size, lst.st_mtime_ns, label_sha, boxes)


def _read_label(path: str) -> bytes:
    """A base label file, read up to its limit + 1 byte (the file was listed as a regular file)."""
    with open(path, "rb") as f:
        data = f.read(MAX_LABEL_BYTES + 1)
    if len(data) > MAX_LABEL_BYTES:
        raise InvalidInput(f"{path}: base label file too large (over the limit of {MAX_LABEL_BYTES} bytes)")
    return data


def count_boxes(label: bytes) -> int:
    return sum(1 for line in label.splitlines() if line.strip())
