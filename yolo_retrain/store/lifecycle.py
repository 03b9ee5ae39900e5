"""A retrain's transitions of corrections: claim, release, and the gate's decision.

::

    pending ──claim──► claimed ──screening passes it──► accepted     (in every later retrain's data, whatever the model's fate)
                          │    └─screening doubts it──► suspicious   (held for a person, with the reason per box: see review)
                          │    (gate rejects the version──► rejected: the lifecycle before screening, kept for its callers)
                          └─retrain failed or skipped: release──► pending (superseded if a newer one came)

(A correction whose source was deleted while claimed is withdrawn instead of rejected or released: ``withdrawal``.)

Each transition is one small function over a session; a decision applies to a set of correction ids, so a gate
may decide per correction. None commits: the caller's transaction does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from yolo_retrain.gate import GateDecision
from yolo_retrain.store import threshold, withdrawal
from yolo_retrain.store.schema import CorrectionRow

_CHUNK = 500  # ids per IN list: well under every backend's limit on bound parameters


def claimed_query(batch_id: str) -> Any:
    """The batch's claimed rows, oldest first."""
    return (
        select(CorrectionRow)
        .where(CorrectionRow.status == "claimed", CorrectionRow.batch_id == batch_id)
        .order_by(CorrectionRow.created_at, CorrectionRow.id)
    )


def claimed_ids(session: Session, batch_id: str) -> list[str]:
    query = select(CorrectionRow.id).where(CorrectionRow.status == "claimed", CorrectionRow.batch_id == batch_id)
    return list(session.scalars(query))


def claim(session: Session, batch_id: str, limit: int | None) -> None:
    """Pending corrections (oldest first) become ``claimed`` by ``batch_id``, ``limit`` capping the batch's total.

    The conditional UPDATE only takes rows still pending, so concurrent claimers never share a row.
    """
    room = None
    if limit is not None:
        held = session.scalar(select(func.count()).select_from(claimed_query(batch_id).subquery())) or 0
        room = max(0, limit - held)
    oldest = (
        select(CorrectionRow.id)
        .where(CorrectionRow.status == "pending")
        .order_by(CorrectionRow.created_at, CorrectionRow.id)
        .limit(room)
    )
    session.execute(
        update(CorrectionRow)
        .where(CorrectionRow.status == "pending", CorrectionRow.id.in_(oldest.scalar_subquery()))
        .values(status="claimed", batch_id=batch_id)
    )
    threshold.arm(session)  # what is pending from now on is a new backlog: its crossing gets announced again


def release(session: Session, batch_id: str) -> int:
    """A failed retrain's corrections go back: ``claimed`` → ``pending``, or ``superseded`` where a newer correction
    of the same image arrived meanwhile. Returns how many left the batch."""
    newer = aliased(CorrectionRow)
    has_newer = (
        select(newer.id)
        .where(newer.image_sha256 == CorrectionRow.image_sha256, newer.status == "pending")
        .where(newer.created_at >= CorrectionRow.created_at)
        .exists()
    )
    mine = (CorrectionRow.status == "claimed", CorrectionRow.batch_id == batch_id)
    withdrawn = withdrawal.release_withdrawn(session, batch_id)
    superseded = session.execute(update(CorrectionRow).where(*mine, has_newer).values(status="superseded", batch_id=None))
    released = session.execute(update(CorrectionRow).where(*mine).values(status="pending", batch_id=None))
    return withdrawn + superseded.rowcount + released.rowcount


def record_gate_decision(session: Session, batch_id: str, model_version: str, decision: GateDecision) -> int:
    """The batch's claimed corrections went into ``model_version``: accepted if the gate promoted it, else
    rejected, with the gate's reason. Returns how many were marked; 0 when called again (idempotent)."""
    ids = claimed_ids(session, batch_id)
    reason = f"gate {decision.label} v{model_version}: {decision.reason}"
    transition = accept_into if decision.promote else reject_from
    marked = transition(session, ids, model_version, reason)
    withdrawal.settle_decided(session, ids)  # a source deleted while the retrain ran
    return marked


def record_screened_batch(session: Session, batch_id: str, model_version: str, decision: GateDecision, held: Mapping[str, str]) -> int:
    """Each claimed correction of the batch on its own merit: ``suspicious`` with its reason where ``held`` names it,
    else ``accepted`` whatever the gate decided of the model; both record ``model_version``. Returns how many were
    accepted; 0 when called again (idempotent).

    A correction whose source was deleted while the retrain ran is ``withdrawn`` instead, unless the promoted model
    learned it: then it is accepted and listed for review. Withdrawn before anything is accepted, so it supersedes
    no earlier accepted correction of its image."""
    ids = claimed_ids(session, batch_id)
    unlearned = [i for i in ids if i in held or not decision.promote]  # no model in use learned these
    withdrawn = withdrawal.withdraw_deleted(session, unlearned)
    ids = [i for i in ids if i not in withdrawn]
    for correction_id in (i for i in ids if i in held):
        _decide(session, [correction_id], "suspicious", model_version, f"screening v{model_version}: {held[correction_id]}")
    passed = [i for i in ids if i not in held]
    accepted = accept_into(session, passed, model_version, f"screened v{model_version}: accepted on its own merit (model {decision.label})")
    withdrawal.settle_decided(session, passed)  # accepted by the promoted model with its source deleted: for review
    return accepted


def accept_into(session: Session, ids: Iterable[str], model_version: str, reason: str) -> int:
    """Claimed corrections ``ids`` were learned by ``model_version``, which was promoted: ``accepted``. Each
    supersedes the older accepted correction of its image."""
    ids = list(ids)
    marked = _decide(session, ids, "accepted", model_version, reason)
    for chunk in _chunks(ids):
        keep_newest_accepted(session, select(CorrectionRow.image_sha256).where(CorrectionRow.id.in_(chunk)))
    return marked


def reject_from(session: Session, ids: Iterable[str], model_version: str, reason: str) -> int:
    """Claimed corrections ``ids`` went into ``model_version``, which the gate rejected: ``rejected``, held for a
    person with the gate's reason."""
    return _decide(session, list(ids), "rejected", model_version, reason)


def _decide(session: Session, ids: list[str], status: str, model_version: str, reason: str) -> int:
    now, marked = datetime.now(timezone.utc), 0
    for chunk in _chunks(ids):
        result = session.execute(
            update(CorrectionRow)
            .where(CorrectionRow.status == "claimed", CorrectionRow.id.in_(chunk))
            .values(status=status, applied_version=model_version, applied_at=now, status_reason=reason)
        )
        marked += result.rowcount
    return marked


def keep_newest_accepted(session: Session, images: Any) -> None:
    """Of the accepted corrections of ``images`` (sha256s, or a query of them), only the newest stays accepted
    (newest ``created_at``, ties by id, as the dataset picks); the older ones become superseded."""
    newer = aliased(CorrectionRow)
    has_newer = (
        select(newer.id)
        .where(newer.image_sha256 == CorrectionRow.image_sha256, newer.status == "accepted")
        .where(
            or_(
                newer.created_at > CorrectionRow.created_at,
                and_(newer.created_at == CorrectionRow.created_at, newer.id > CorrectionRow.id),
            )
        )
        .exists()
    )
    session.execute(
        update(CorrectionRow)
        .where(CorrectionRow.status == "accepted", CorrectionRow.image_sha256.in_(images), has_newer)
        .values(status="superseded", status_reason="a newer correction of the image was accepted")
        .execution_options(synchronize_session=False)
    )


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]
