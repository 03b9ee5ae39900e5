"""Adding corrections: duplicates refused, blobs written, older corrections of the image superseded, in one
transaction that holds the images' locks (``image_locks``).

A newer correction of an image makes its older ``pending`` or ``rejected`` ones ``superseded``; a ``claimed`` one
is left to the retrain that holds it. The same image with the same labels while pending or claimed is refused
(:class:`DuplicateCorrection`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from yolo_retrain.errors import DuplicateCorrection
from yolo_retrain.store import diffs
from yolo_retrain.store.blobs import blob_path, write_blob
from yolo_retrain.store.engine import Database
from yolo_retrain.store.image_locks import lock_images
from yolo_retrain.store.records import Correction, SourceDiff, snapshot
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


def store_candidates(
    db: Database, blobs_dir: Path, candidates: list[Candidate], provenance: Provenance, source: SourceDiff | None = None
) -> list[Correction]:
    """Insert validated candidates in one transaction (with ``source``'s diff, for a single candidate); blobs are
    written only once no duplicate was found.

    The images' locks are held for the whole transaction (see ``image_locks``): the checks see every correction
    committed before, and if the insert fails, the blobs it created are deleted before another writer of the image
    can commit a row naming them, and only if no committed row names them.
    """
    written: list[tuple[Path, str]] = []
    with db.busy("store the correction"), Session(db.writer, expire_on_commit=False) as session:
        try:
            lock_images(session, [c.sha256 for c in candidates])
            try:
                with session.begin_nested():  # a savepoint: a failed insert leaves the transaction (and locks) usable
                    if source is not None:
                        _refuse_redelivery(session, source)
                    rows = _insert(session, blobs_dir, candidates, provenance, written)
                    if source is not None:
                        (row,) = rows
                        diffs.record(session, source.for_correction(row.id, datetime.now(timezone.utc)))
            except BaseException:
                _delete_unreferenced(session, written)
                raise
            session.commit()
        except BaseException:
            session.rollback()
            raise
    return [snapshot(r) for r in rows]


def _delete_unreferenced(session: Session, written: list[tuple[Path, str]]) -> None:
    """Delete the blobs this failed insert created, unless a committed row names one (or that cannot be told)."""
    for path, sha256 in written:
        try:
            named = session.scalar(
                select(CorrectionRow.id)
                .where(CorrectionRow.image_sha256 == sha256, CorrectionRow.image_path == str(path))
                .limit(1)
            )
        except Exception:  # noqa: BLE001 — the database is gone: keep the blob (an orphan file is harmless)
            return
        if named is None:
            path.unlink(missing_ok=True)


def _refuse_redelivery(session: Session, source: SourceDiff) -> None:
    """The same content from the same source again is a duplicate (a redelivery), whatever became of its correction
    since. (An older version again is a reviewer's revert: stored, it supersedes the newer one.)"""
    earlier = diffs.latest_of_source(session, source.source_key)
    if earlier is not None and earlier.source_digest == source.source_digest:
        raise DuplicateCorrection(f"{source.source_key}: already stored as correction {earlier.correction_id}")


def _insert(
    session: Session,
    blobs_dir: Path,
    candidates: list[Candidate],
    provenance: Provenance,
    written: list[tuple[Path, str]],
) -> list[CorrectionRow]:
    """Refuse duplicates, write new blobs (listed in ``written``), supersede and insert rows; not committed."""
    open_rows = {c.sha256: open_rows_of(session, c.sha256) for c in candidates}  # one query per image
    refuse_duplicates(candidates, open_rows)
    rows = []
    for c in candidates:
        path = blob_path(blobs_dir, c.sha256, c.suffix)
        if write_blob(path, c.data):
            written.append((path, c.sha256))
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
        source_deleted_at=None,
        image_metadata=c.metadata,
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
