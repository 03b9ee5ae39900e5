"""What the store hands out: snapshots of its rows (the store stays the source of truth)."""

from __future__ import annotations

import builtins
import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from yolo_retrain.store.schema import CorrectionRow, DiffRow, Status


@dataclass(frozen=True)
class Correction:
    """One stored correction (a snapshot; the store is the source of truth)."""

    id: str
    image_sha256: str
    image_path: str
    original_name: str
    label_text: str
    num_boxes: int
    width: int
    height: int
    source_model_version: str | None
    author: str | None
    created_at: datetime
    status: Status
    batch_id: str | None
    applied_version: str | None
    applied_at: datetime | None
    status_reason: str | None = None
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    source_deleted_at: datetime | None = None  # its source (a Label Studio annotation) was deleted: see withdrawal
    image_metadata: str | None = None  # JSON {name: value} (camera, site...): the holdout's slices

    @property
    def metadata(self) -> dict[str, str]:
        """The image's metadata (camera, site...): what the gate slices the holdout by."""
        return json.loads(self.image_metadata) if self.image_metadata else {}


_FIELDS = [f.name for f in dataclasses.fields(Correction)]


def snapshot(row: CorrectionRow) -> Correction:
    return Correction(**{name: getattr(row, name) for name in _FIELDS})


@dataclass(frozen=True)
class CorrectionDiff:
    """A stored diff (a snapshot)."""

    correction_id: str
    source_key: str | None
    source_digest: str | None
    predicted_version: str | None
    prediction_source: str
    predicted_labels: str
    diff: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class SourceDiff:
    """Where a correction comes from (e.g. one Label Studio annotation, and a digest of what it delivered) and what
    it changed against the model's prediction: stored with the correction, in its transaction."""

    source_key: str
    source_digest: str
    predicted_version: str | None
    prediction_source: str
    predicted_labels: str
    diff: dict[str, Any]

    def for_correction(self, correction_id: str, created_at: datetime) -> CorrectionDiff:
        return CorrectionDiff(correction_id, self.source_key, self.source_digest, self.predicted_version,
                              self.prediction_source, self.predicted_labels, self.diff, created_at)  # fmt: skip


def diff_snapshot(row: DiffRow) -> CorrectionDiff:
    fields = {f.name: getattr(row, f.name) for f in dataclasses.fields(CorrectionDiff) if f.name != "diff"}
    return CorrectionDiff(**fields, diff=json.loads(row.diff))


def diff_row(diff: CorrectionDiff) -> DiffRow:
    return DiffRow(**{**dataclasses.asdict(diff), "diff": json.dumps(diff.diff, sort_keys=True)})


class AcceptedCorrection(NamedTuple):
    """What a dataset needs of an accepted correction (fits ``dataset.CorrectionLike``); a tuple because a retrain
    reads every accepted correction of the store."""

    id: str
    image_sha256: str
    image_path: str
    label_text: str
    created_at: datetime
    image_metadata: str | None = None  # JSON, as stored


@dataclass(frozen=True)
class TrainingCorrections:
    """What one retrain learns from, besides the base data."""

    batch: builtins.list[Correction]  # claimed by this retrain
    accepted: builtins.list[AcceptedCorrection]  # accepted earlier (promoted by the gate, or approved by a person)
    held_rejected: int  # rejected or suspicious corrections waiting for a person: not in this retrain


@dataclass(frozen=True)
class ScreenedBatch:
    """What a retrain recorded of its batch: how many accepted, and the held (suspicious) ones' reasons by id."""

    accepted: int
    held: dict[str, str]
