"""Image blobs: content-addressed files under ``<corrections dir>/images/<sha[:2]>/<sha><suffix>``."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def blob_path(blobs_dir: Path, sha256: str, suffix: str) -> Path:
    return blobs_dir / "images" / sha256[:2] / f"{sha256}{suffix}"


def write_blob(path: Path, data: bytes) -> bool:
    """Write the image at ``path`` once, atomically; True if this call created the file."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True
