"""The one file hash: sha256 of a file's bytes (weights, images, labels)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of the file at ``path``, streamed (weights are megabytes, a dataset holds many images)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
