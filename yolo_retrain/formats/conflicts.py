"""Exports that label one image twice: refused naming both files, never one silently superseding the other.

Stored one after the other, the second correction of an image supersedes the first; within one export that
order is arbitrary, and which labels are right is unknown.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from yolo_retrain.errors import InvalidInput
from yolo_retrain.formats.records import Export, Record
from yolo_retrain.hashing import file_sha256
from yolo_retrain.labels import MAX_IMAGE_BYTES


def refuse_conflicts(export: Export) -> Export:
    """``export`` unchanged if no image is labelled twice; InvalidInput naming both files otherwise."""
    return _one_labelling_per_image(_one_label_file_per_image(export))


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
