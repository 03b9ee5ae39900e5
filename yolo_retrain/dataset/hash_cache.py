"""sha256 of each base image and label file, cached by path, size and mtime: a rebuild reads only what changed."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Self

from yolo_retrain.dataset.base import BaseImage
from yolo_retrain.hashing import file_sha256

HASH_CACHE_NAME = "hash_cache.sqlite"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

Progress = Callable[[int, int], None]


class FileFacts(NamedTuple):
    """What a build needs of one base image: its content hash, its label's, and the label's number of boxes."""

    image_sha256: str
    label_sha256: str  # of the empty label when the image has no label file
    boxes: int


class _CachedRow(NamedTuple):
    """One row of the cache (one per base image); the label columns are None when it has no label file."""

    image: str
    image_size: int
    image_mtime_ns: int
    image_sha256: str
    label_size: int | None
    label_mtime_ns: int | None
    label_sha256: str | None
    boxes: int | None

    def facts(self) -> FileFacts:
        return FileFacts(self.image_sha256, self.label_sha256 or EMPTY_SHA256, self.boxes or 0)

    def image_unchanged(self, st: os.stat_result) -> bool:
        return self.image_size == st.st_size and self.image_mtime_ns == st.st_mtime_ns

    def label_unchanged(self, lst: os.stat_result | None) -> bool:
        if lst is None:
            return self.label_size is None
        return self.label_size == lst.st_size and self.label_mtime_ns == lst.st_mtime_ns


class _Stale(NamedTuple):
    """A base image whose cached row is missing or out of date, with what ``os.stat`` said of its files."""

    item: BaseImage
    image_stat: os.stat_result
    label_stat: os.stat_result | None
    cached: _CachedRow | None


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
        rows = self._db.execute(f"SELECT {', '.join(_CachedRow._fields)} FROM base_files")
        self._cached = {row.image: row for row in map(_CachedRow._make, rows)}
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def facts(self, images: list[BaseImage], progress: Progress | None) -> tuple[dict[str, FileFacts], int]:
        """Image path -> its facts, and how many images had to be read and hashed."""
        known: dict[str, FileFacts] = {}
        stale: list[_Stale] = []
        for item in {i.image: i for i in images}.values():
            st, lst = os.stat(item.image), os.stat(item.label) if item.label else None
            cached = self._cached.get(item.image)
            if cached is not None and cached.image_unchanged(st) and cached.label_unchanged(lst):
                known[item.image] = cached.facts()
            else:
                stale.append(_Stale(item, st, lst, cached))
        total = len(known) + len(stale)
        if progress:
            progress(len(known), total)
        rows: list[_CachedRow] = []
        # Chunks, not one future per file: most files are small, and per-file futures cost more than the hashing.
        chunks = [stale[i : i + 256] for i in range(0, len(stale), 256)]
        with ThreadPoolExecutor() as pool:
            for chunk_rows in pool.map(lambda chunk: [_fresh_row(s) for s in chunk], chunks):
                rows += chunk_rows
                known.update((row.image, row.facts()) for row in chunk_rows)
                if progress:
                    progress(len(known), total)
        if rows:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO base_files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        images_read = sum(s.cached is None or not s.cached.image_unchanged(s.image_stat) for s in stale)
        return known, images_read


def _fresh_row(stale: _Stale) -> _CachedRow:
    """A fresh cache row for one base image: whichever of image and label changed is read again."""
    item, st, lst, cached = stale
    image_sha = cached.image_sha256 if cached and cached.image_unchanged(st) else file_sha256(item.image)
    if lst is None:
        return _CachedRow(item.image, st.st_size, st.st_mtime_ns, image_sha, None, None, None, 0)
    if cached is not None and cached.label_sha256 is not None and cached.label_unchanged(lst):
        label_sha, boxes = cached.label_sha256, cached.boxes or 0
    else:
        with open(item.label, "rb") as f:
            data = f.read()
        label_sha, boxes = hashlib.sha256(data).hexdigest(), count_boxes(data)
    return _CachedRow(item.image, st.st_size, st.st_mtime_ns, image_sha, lst.st_size, lst.st_mtime_ns, label_sha, boxes)


def count_boxes(label: bytes) -> int:
    return sum(1 for line in label.splitlines() if line.strip())
