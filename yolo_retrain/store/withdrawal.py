"""A correction whose source is deleted (a reviewer deletes their Label Studio annotation) is withdrawn.

::

    pending, rejected ──source deleted──► withdrawn   (kept as a record; out of datasets and counts)
    claimed ──source deleted──► claimed, marked: a gate that rejects it (or a failed retrain) ─► withdrawn;
                                                 a gate that promotes it ─► accepted, listed for review
    accepted ──source deleted──► accepted, listed for review: a model already learned it

Every correction of the source (its earlier, superseded versions too) keeps the time in ``source_deleted_at``. A
correction that a withdrawn one had superseded is open again (pending, or rejected), so none is lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from yolo_retrain.store.records import Correction, snapshot
from yolo_retrain.store.schema import CorrectionRow, DiffRow

WITHDRAWABLE = ("pending", "rejected")  # not yet learned by a model that is in use


@dataclass(frozen=True)
class Withdrawal:
    """What a deleted source did to its corrections."""

    withdrawn: list[Correction] = field(default_factory=list)  # now ``withdrawn``
    in_retrain: list[Correction] = field(default_factory=list)  # claimed by a running retrain: its gate decides
    learned: list[Correction] = field(default_factory=list)  # accepted: a model learned it; listed for review
    restored: list[Correction] = field(default_factory=list)  # what the withdrawn ones had superseded: open again


def withdraw_sources(session: Session, source_like: str, why: str, now: datetime) -> Withdrawal:
    """Withdraw the corrections whose source key matches ``source_like`` (an SQL LIKE pattern); those marked by an
    earlier call are left as they are (a redelivered deletion changes nothing)."""
    ids = list(session.scalars(select(DiffRow.correction_id).where(DiffRow.source_key.like(source_like))))
    rows = [row for row in _rows(session, ids) if row.source_deleted_at is None]  # marked before: done already
    for row in rows:
        row.source_deleted_at = now
        if row.status in WITHDRAWABLE:
            row.status, row.status_reason = "withdrawn", f"{why} (was {row.status_reason or row.status})"
        elif row.status == "accepted":
            learned = f"after v{row.applied_version} learned it: review"
            row.status_reason = f"{row.status_reason or 'accepted'}; {why} {learned}"
        elif row.status == "claimed":
            row.status_reason = f"{why} while retrain {row.batch_id} held it"
    session.flush()
    by_status = {s: [snapshot(r) for r in rows if r.status == s] for s in ("withdrawn", "claimed", "accepted")}
    restored = restore_predecessors(session, [c.id for c in by_status["withdrawn"]])
    return Withdrawal(by_status["withdrawn"], by_status["claimed"], by_status["accepted"], restored)


def restore_predecessors(session: Session, withdrawn_ids: list[str]) -> list[Correction]:
    """The corrections that withdrawn ones had superseded when they were added (looking past earlier versions of a
    deleted source) are open again: ``pending``, or ``rejected`` if a gate had rejected them (they keep its
    version). Otherwise a reviewer deleting their annotation would lose the correction it had replaced."""
    restored: list[CorrectionRow] = []
    frontier, seen = list(withdrawn_ids), set(withdrawn_ids)
    while frontier:
        reasons = [f"superseded by correction {i}" for i in frontier]
        query = select(CorrectionRow).where(CorrectionRow.status == "superseded", CorrectionRow.status_reason.in_(reasons))
        frontier = []
        for row in session.scalars(query.with_for_update()):
            if row.id in seen:
                continue
            seen.add(row.id)
            if row.source_deleted_at is not None:  # an earlier version of a deleted source: look past it
                frontier.append(row.id)
                continue
            if _open_elsewhere(session, row):  # a newer correction of the image stands: it stays superseded
                continue
            row.status = "rejected" if row.applied_version is not None else "pending"
            row.status_reason = f"{row.status_reason}, since withdrawn: {row.status} again"
            restored.append(row)
    session.flush()
    return [snapshot(r) for r in restored]


def settle_decided(session: Session, ids: Iterable[str]) -> None:
    """Of ``ids`` just decided by the gate, those whose source was deleted while the retrain ran: rejected ones become
    ``withdrawn``; accepted ones (a model learned them) stay accepted, their reason saying so, for review."""
    ids = list(ids)
    deleted = (CorrectionRow.source_deleted_at.is_not(None),)
    for start in range(0, len(ids), 500):
        chunk = CorrectionRow.id.in_(ids[start : start + 500])
        rejected, accepted = (chunk, CorrectionRow.status == "rejected", *deleted), (chunk, CorrectionRow.status == "accepted", *deleted)
        to_withdraw = list(session.scalars(select(CorrectionRow.id).where(*rejected)))
        withdrawn = CorrectionRow.status_reason + "; its source was deleted: withdrawn"
        session.execute(update(CorrectionRow).where(*rejected).values(status="withdrawn", status_reason=withdrawn))
        restore_predecessors(session, to_withdraw)
        review = CorrectionRow.status_reason + "; its source was deleted while the retrain ran: review"
        session.execute(update(CorrectionRow).where(*accepted).values(status_reason=review))


def withdraw_deleted(session: Session, ids: Iterable[str]) -> set[str]:
    """Of the claimed corrections ``ids``, those whose source was deleted while the retrain ran: ``withdrawn`` (what
    they had superseded open again). Returns their ids."""
    ids, found = list(ids), set()
    for start in range(0, len(ids), 500):
        mine = (CorrectionRow.id.in_(ids[start : start + 500]), CorrectionRow.status == "claimed", CorrectionRow.source_deleted_at.is_not(None))
        chunk = list(session.scalars(select(CorrectionRow.id).where(*mine)))
        withdrawn = CorrectionRow.status_reason + "; its source was deleted while the retrain ran: withdrawn"
        session.execute(update(CorrectionRow).where(*mine).values(status="withdrawn", batch_id=None, status_reason=withdrawn))
        found.update(chunk)
    restore_predecessors(session, sorted(found))
    return found


def release_withdrawn(session: Session, batch_id: str) -> int:
    """A failed retrain's claimed corrections whose source was deleted meanwhile: ``withdrawn``, not pending again."""
    mine = (CorrectionRow.status == "claimed", CorrectionRow.batch_id == batch_id, CorrectionRow.source_deleted_at.is_not(None))
    to_withdraw = list(session.scalars(select(CorrectionRow.id).where(*mine)))
    withdrawn = CorrectionRow.status_reason + "; retrain failed: withdrawn"
    result = session.execute(update(CorrectionRow).where(*mine).values(status="withdrawn", batch_id=None, status_reason=withdrawn))
    restore_predecessors(session, to_withdraw)
    return result.rowcount


def _open_elsewhere(session: Session, row: CorrectionRow) -> bool:
    """Whether another correction of the row's image is pending or claimed (restoring the row would make two)."""
    query = select(CorrectionRow.id).where(
        CorrectionRow.image_sha256 == row.image_sha256, CorrectionRow.status.in_(("pending", "claimed")), CorrectionRow.id != row.id
    )
    return session.scalars(query.limit(1)).first() is not None


def _rows(session: Session, ids: list[str]) -> list[CorrectionRow]:
    rows: list[CorrectionRow] = []
    for start in range(0, len(ids), 500):
        query = select(CorrectionRow).where(CorrectionRow.id.in_(ids[start : start + 500]))
        rows += session.scalars(query.with_for_update())
    return sorted(rows, key=lambda r: (r.created_at, r.id))
