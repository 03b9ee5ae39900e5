"""Which image goes where with which labels: the base images, each replaced or joined by its newest correction."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple, Protocol

from yolo_retrain.data_yaml import is_image
from yolo_retrain.dataset.base import SPLITS, BaseDataset
from yolo_retrain.dataset.hash_cache import BaseFile, count_boxes
from yolo_retrain.errors import InvalidInput
from yolo_retrain.files import read_bounded
from yolo_retrain.image_metadata import from_json, merged, to_json
from yolo_retrain.labels import MAX_LABEL_BYTES

_SHA256 = re.compile(r"[0-9a-f]{64}")


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


class Entry(NamedTuple):
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
    metadata: str = ""  # canonical JSON of the image's metadata (camera, site...), "" when none

    def label_bytes(self) -> bytes:
        if self.label_text is not None:
            return self.label_text
        if self.label_path is None:
            return b""
        return read_bounded(self.label_path, MAX_LABEL_BYTES, "base label file")


class AppliedCorrection(NamedTuple):
    """A correction that is in the dataset (one line of ``corrections_applied.json``)."""

    id: str
    image_sha256: str
    split: str
    replaced_base: bool  # False: a new image
    origin: str  # "batch" (this retrain's) | "earlier" (accepted by an earlier retrain or a person)


class Assembly(NamedTuple):
    """A dataset's content, before any file is written."""

    train: list[Entry]  # sorted by image hash
    val: list[Entry]
    applied: list[AppliedCorrection]
    superseded: list[str]  # ids of corrections a newer one of the same image replaced
    duplicate_base_images: int  # base images whose content was already in (val first)

    @property
    def ordered(self) -> list[Entry]:
        return self.train + self.val

    def counts(self, held_rejected: int) -> dict[str, int]:
        overridden = sum(a.replaced_base for a in self.applied)
        from_batch = sum(a.origin == "batch" for a in self.applied)
        return {
            "train_images": len(self.train),
            "val_images": len(self.val),
            "corrected_images": len(self.applied),
            "new_images": len(self.applied) - overridden,
            "overridden_base_images": overridden,
            "duplicate_base_images": self.duplicate_base_images,
            "total_boxes": sum(e.boxes for e in self.train) + sum(e.boxes for e in self.val),
            "corrections_from_this_batch": from_batch,
            "corrections_from_earlier_retrains": len(self.applied) - from_batch,
            "corrections_held_rejected": held_rejected,  # recorded only: held (rejected, suspicious) corrections are not in it
        }

    def applied_json(self) -> str:
        return json.dumps([dict(zip(AppliedCorrection._fields, a, strict=True)) for a in self.applied])


def assemble(
    base: BaseDataset,
    facts: dict[str, BaseFile],
    corrections: Sequence[CorrectionLike],
    batch_ids: set[str],
    holdout_fraction: float,
) -> Assembly:
    """The base images by content (an image in both splits stays in val: the holdout never leaks into train), each
    replaced by its newest correction, which keeps the base image's split; a new image's split is fixed by its hash."""
    entries: dict[str, Entry] = {}
    duplicates = 0
    for item in [i for i in base.images if i.split == "val"] + [i for i in base.images if i.split != "val"]:
        fact = facts[item.image]
        if fact.image_sha256 in entries:
            duplicates += 1
            continue
        entries[fact.image_sha256] = Entry(
            item.split,
            item.name,
            item.image,
            fact.image_sha256,
            fact.label_sha256,
            fact.boxes,
            "base",
            None,
            item.label,
            None,
            to_json(base.metadata.get(item.image, {})) or "",
        )

    winners, superseded = newest_per_image(corrections)
    applied = []
    for sha, corr in sorted(winners.items()):
        old = entries.get(sha)
        split = old.split if old else hash_split(sha, holdout_fraction)
        source = old.source if old else os.path.abspath(corr.image_path)
        text = corr.label_text.encode()
        label_sha = hashlib.sha256(text).hexdigest()
        # the correction's metadata over its base image's (a reviewer may say which camera; the sidecar says the rest)
        own = from_json(getattr(corr, "image_metadata", None))
        metadata = to_json(merged(from_json(old.metadata) if old else {}, own)) or ""
        entries[sha] = Entry(
            split, _link_name(sha, source), source, sha, label_sha, count_boxes(text), "correction", corr.id, None, text,
            metadata,
        )
        origin = "batch" if corr.id in batch_ids else "earlier"
        applied.append(AppliedCorrection(corr.id, sha, split, old is not None, origin))

    by_hash = [entries[sha] for sha in sorted(entries)]
    train, val = ([e for e in by_hash if e.split == split] for split in SPLITS)
    return Assembly(train, val, applied, sorted(superseded), duplicates)


def newest_per_image(corrections: Iterable[CorrectionLike]) -> tuple[dict[str, CorrectionLike], list[str]]:
    """The newest correction of each image (ties broken by id) and the ids of the ones they supersede."""
    winners: dict[str, CorrectionLike] = {}
    superseded: list[str] = []
    for corr in corrections:
        if not _SHA256.fullmatch(corr.image_sha256):
            raise InvalidInput(f"correction {corr.id}: image_sha256 {corr.image_sha256!r} is not a sha256 hex digest")
        if not is_image(corr.image_path) or not os.path.isfile(corr.image_path):
            raise InvalidInput(f"correction {corr.id}: image {corr.image_path} is missing or not an image file")
        current = winners.get(corr.image_sha256)
        if current is None:
            winners[corr.image_sha256] = corr
            continue
        newer, older = sorted((current, corr), key=lambda c: (c.created_at, c.id), reverse=True)
        winners[corr.image_sha256] = newer
        superseded.append(older.id)
    return winners, superseded


def hash_split(image_sha256: str, holdout_fraction: float) -> str:
    """Split of a new image, fixed by its hash."""
    return "val" if int(image_sha256[:8], 16) / 2**32 < holdout_fraction else "train"


def content_digest(names: list[str], entries: Iterable[Entry], with_metadata: bool = True) -> str:
    """sha256 of the dataset's content: class names and each image's split, name, image hash and label hash, and
    its metadata where it has some (so a dataset without metadata keeps the digest it had before metadata existed).
    ``with_metadata=False``: what an evaluation sees (metadata only groups its per-image results into slices)."""
    content = hashlib.sha256(json.dumps(names).encode())
    lines = (
        f"\n{e.split}\t{e.name}\t{e.image_sha256}\t{e.label_sha256}" + (f"\t{e.metadata}" if with_metadata and e.metadata else "")
        for e in entries
    )
    content.update("".join(lines).encode())
    return content.hexdigest()


def _link_name(image_sha256: str, image: str) -> str:
    """A corrected image's name as listed: <sha256[:16]><ext>."""
    return f"{image_sha256[:16]}.{image.rpartition('.')[-1].lower()}"
