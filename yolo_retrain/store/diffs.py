"""Diffs against the model (#13): the prediction a correction corrects and the reviewer's changes, one per correction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from yolo_retrain.store.records import CorrectionDiff, diff_row, diff_snapshot
from yolo_retrain.store.schema import DiffRow


def record(session: Session, diff: CorrectionDiff) -> None:
    session.merge(diff_row(diff))


def latest_of_source(session: Session, source_key: str) -> CorrectionDiff | None:
    """The newest diff recorded for a source (e.g. one Label Studio annotation), if any."""
    query = select(DiffRow).where(DiffRow.source_key == source_key).order_by(DiffRow.created_at.desc())
    row = session.scalars(query.limit(1)).first()
    return diff_snapshot(row) if row else None


def of_corrections(session: Session, correction_ids: list[str]) -> list[CorrectionDiff]:
    """The recorded diffs of these corrections (corrections without one are left out)."""
    found: list[CorrectionDiff] = []
    for start in range(0, len(correction_ids), 500):  # bounded IN lists
        chunk = correction_ids[start : start + 500]
        found += [diff_snapshot(r) for r in session.scalars(select(DiffRow).where(DiffRow.correction_id.in_(chunk)))]
    return found
