"""Build (or reuse) a retraining dataset: hash the base, assemble the entries, place the files."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from yolo_retrain.dataset.assembly import CorrectionLike, assemble, content_digest
from yolo_retrain.dataset.base import load_base_dataset
from yolo_retrain.dataset.hash_cache import HASH_CACHE_NAME, HashCache, Progress
from yolo_retrain.dataset.placement import (
    CORRECTED_DIR,
    image_list,
    manifest_text,
    place,
    refresh,
    write_corrected,
    write_dataset_folder,
)
from yolo_retrain.errors import InvalidInput


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

    Args:
        base_data: The base data.yaml (its class names are the contract).
        corrections: This retrain's batch.
        out_root: Where dataset folders, the corrected store and the hash cache live.
        holdout_fraction: Share of new (non-base) images that go to val, fixed by each image's hash.
        progress: ``progress(done, total)`` while base images are hashed (cached ones count as done at once).
        accepted: The corrections earlier retrains (or a person) accepted. Of several corrections of one image the
            newest ``created_at`` wins, wherever it came from. Correction image hashes are trusted (the store
            computed them); base images and labels are hashed through the cache.
        held_rejected: Rejected corrections left out; only recorded.

    The dataset folder is written beside its final place and renamed into it, so a half-written one is never used;
    a corrected image's link is made only once its label file is complete.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise InvalidInput(f"holdout_fraction {holdout_fraction}: must be in [0, 1)")
    base_data, out_root = Path(base_data), Path(os.path.abspath(out_root))
    batch_ids = {c.id for c in corrections}
    with _collector_paused():
        base = load_base_dataset(base_data)
        out_root.mkdir(parents=True, exist_ok=True)
        with HashCache(out_root / HASH_CACHE_NAME) as cache:
            facts, hashed_files = cache.facts(base.images, progress)
        content = assemble(base, facts, [*accepted, *corrections], batch_ids, holdout_fraction)

        ordered = content.ordered
        digest = content_digest(base.names, ordered)
        root = out_root / digest[:16]
        placement = place(ordered, out_root / CORRECTED_DIR)
        corrected_written = write_corrected(out_root / CORRECTED_DIR, placement.corrected)
        data_yaml = {"path": str(root), "train": "train.txt", "val": "val.txt", "names": dict(enumerate(base.names))}
        files = {
            **placement.files,
            "train.txt": image_list(root, placement.listed[: len(content.train)]),
            "val.txt": image_list(root, placement.listed[len(content.train) :]),
            "manifest.json": manifest_text(ordered, placement.listed).encode(),
            "data.yaml": yaml.safe_dump(data_yaml, sort_keys=False, allow_unicode=True).encode(),
        }
        reused = (root / "data.yaml").is_file()
        if reused:
            refresh(root, files, placement.links)
        else:
            write_dataset_folder(root, files, placement.links)

        # Still inside: with the collector back, the first new objects would set off a pass over the whole heap.
        return BuiltDataset(
            root=root,
            data_yaml=root / "data.yaml",
            manifest_path=root / "manifest.json",
            digest=digest,
            holdout_digest=content_digest(base.names, content.val, with_metadata=False),
            base_data=base.data_yaml,
            names=base.names,
            holdout_fraction=holdout_fraction,
            counts=content.counts(held_rejected),
            corrections_applied_json=content.applied_json(),
            superseded_corrections=content.superseded,
            hashed_files=hashed_files,
            reused=reused,
            corrected_written=corrected_written,
        )


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


def _jsonable(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
