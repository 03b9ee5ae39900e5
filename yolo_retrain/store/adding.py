"""Adding corrections: duplicates refused, blobs written, older corrections of the image superseded, in one transaction.

A newer correction of an image makes its older ``pending`` or ``rejected`` ones ``superseded``; a ``claimed`` one
is left to the retrain that holds it. The same image with the same labels while pending or claimed is refused
(:class:`DuplicateCorrection`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from yolo_retrain.errors import DuplicateCorrection
from yolo_retrain.store.blobs import blob_path, write_blob
from yolo_retrain.store.engine import Database
from yolo_retrain.store.records import Correction, snapshot
from yolo_retrain.store.schema import CorrectionRow
from yolo_retrain.store.validation import Candidate

OPEN = ("pending", "claimed", "rejected", "suspicious")
REPLACEABLE = ("pending", "rejected", "suspicious")  # a claimed one is in a running retrain: that retrain decides it


@dataclass(frozen=True)
class Provenance:
    """Who made the corrections being stored, and when."""

    when: datetime
    source_model_version: str | None
    author: str | None


@dataclass(frozen=True)
class OpenRow:
    """A stored correction of an image that a new one may duplicate or replace: pending, claimed or rejected."""

    id: str
    label_text: str
    status: str
    created_at: datetime


def store_candidates(db: Database, blobs_dir: Path, candidates: list[Candidate], provenance: Provenance) -> list[Correction]:
    """Insert validated candidates in one transaction; blobs are written only once no duplicate was found."""
    written: list[Path] = []
    with db.busy("store the correction"), Session(db.writer, expire_on_commit=False) as session:
        try:
            rows = _insert(session, blobs_dir, candidates, provenance, written)
            session.commit()
        except BaseException:
            for path in written:  # before the rollback drops the write lock: no other writer used these blobs
                path.unlink(missing_ok=True)
            session.rollback()
            raise
    return [snapshot(r) for r in rows]


def _insert(
    session: Session, blobs_dir: Path, candidates: list[Candidate], provenance: Provenance, written: list[Path]
) -> list[CorrectionRow]:
    """Refuse duplicates, write new blobs (listed in ``written``), supersede and insert rows; not committed."""
    open_rows = {c.sha256: open_rows_of(session, c.sha256) for c in candidates}  # one query per image
    refuse_duplicates(candidates, open_rows)
    rows = []
    for c in candidates:
        path = blob_path(blobs_dir, c.sha256, c.suffix)
        if write_blob(path, c.data):
            written.append(path)
        row = new_row(c, path, provenance)
        if supersede_older(session, row, open_rows[c.sha256]):
            row.status, row.status_reason = "superseded", "a newer correction of the image was already stored"
        session.add(row)
        session.flush()
        rows.append(row)
        # a later image of this batch supersedes it, as a later call would
        open_rows[c.sha256].append(OpenRow(row.id, row.label_text, row.status, row.created_at))
    return rows


def open_rows_of(session: Session, image_sha256: str) -> list[OpenRow]:
    """The image's pending, claimed and rejected corrections (one query serves the duplicate and superseding checks)."""
    query = select(CorrectionRow.id, CorrectionRow.label_text, CorrectionRow.status, CorrectionRow.created_at).where(
        CorrectionRow.image_sha256 == image_sha256, CorrectionRow.status.in_(OPEN)
    )
    return [OpenRow(*r) for r in session.execute(query)]


def refuse_duplicates(candidates: list[Candidate], open_rows: dict[str, list[OpenRow]]) -> None:
    """DuplicateCorrection if a candidate repeats the labels of a pending or claimed correction of its image, or of
    another candidate."""
    seen: set[tuple[str, str]] = set()
    for c in candidates:
        dup = next(
            (r.id for r in open_rows[c.sha256] if r.label_text == c.label_text and r.status in ("pending", "claimed")),
            None,
        )
        if dup is not None or (c.sha256, c.label_text) in seen:
            raise DuplicateCorrection(
                f"{c.name}: the same image with the same labels is already stored and not yet applied"
                + (f" (correction {dup})" if dup else "")
            )
        seen.add((c.sha256, c.label_text))


def new_row(c: Candidate, path: Path, provenance: Provenance) -> CorrectionRow:
    return CorrectionRow(
        id=uuid.uuid4().hex,
        image_sha256=c.sha256,
        image_path=str(path),
        original_name=c.name,
        label_text=c.label_text,
        num_boxes=c.num_boxes,
        width=c.width,
        height=c.height,
        source_model_version=provenance.source_model_version,
        author=provenance.author,
        created_at=provenance.when,
        status="pending",
        # set, not left unloaded: an UPDATE later in the same session then refreshes them in the returned rows
        status_reason=None,
        batch_id=None,
        applied_version=None,
        applied_at=None,
        reviewed_by=None,
        reviewed_at=None,
    )


def supersede_older(session: Session, new: CorrectionRow, open_rows: list[OpenRow]) -> bool:
    """The image's older pending and rejected corrections become superseded by ``new``; True if a newer one exists
    (a backdated ``new``, which is then the superseded one)."""
    replaceable = [r for r in open_rows if r.status in REPLACEABLE]
    if any(r.created_at <= new.created_at for r in replaceable):
        session.execute(
            update(CorrectionRow)
            .where(
                CorrectionRow.image_sha256 == new.image_sha256,
                CorrectionRow.status.in_(REPLACEABLE),
                CorrectionRow.created_at <= new.created_at,
            )
            .values(status="superseded", status_reason=f"superseded by correction {new.id}")
        )
    return any(r.created_at > new.created_at for r in replaceable)
