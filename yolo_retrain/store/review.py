"""A person's review of held corrections: requeue (back to pending), accept without a retrain, or drop.

::

    pending ◄── requeue ── rejected ──accept──► accepted
                              └──drop──► dropped (kept as a record; a pending one may be dropped too)

Ids and batch ids may be unique prefixes. Anything not found or not in a reviewable status refuses the whole
action, naming it (InvalidInput), and nothing changes.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from yolo_retrain.errors import InvalidInput
from yolo_retrain.store.lifecycle import keep_newest_accepted
from yolo_retrain.store.records import Correction, snapshot
from yolo_retrain.store.schema import CorrectionRow

REVIEWABLE: dict[str, tuple[str, ...]] = {  # a person's action -> the statuses it applies to
    "requeue": ("rejected",),
    "accept": ("rejected",),
    "drop": ("rejected", "pending"),
}
RESULT = {"requeue": "pending", "accept": "accepted", "drop": "dropped"}  # the status each action leaves
_DONE = {"requeue": "requeued", "accept": "accepted", "drop": "dropped"}


def review(session: Session, action: str, ids: list[str], batch: str | None, by: str | None) -> list[Correction]:
    """Move the rows a person named to the action's status, recording who, when and what they were before."""
    if not ids and batch is None:
        raise InvalidInput(f"{action}: give correction ids or a batch id")
    status = RESULT[action]
    rows = find_for_review(session, action, ids, batch, REVIEWABLE[action])
    now = datetime.now(timezone.utc)
    for row in rows:
        row.status_reason = f"{_DONE[action]} by {by or 'a person'} (was {row.status_reason or row.status})"
        row.status, row.reviewed_by, row.reviewed_at = status, by, now
        if status == "pending":  # a new round: the next claim gives it a batch, the next gate a version
            row.batch_id = row.applied_version = row.applied_at = None
    session.flush()
    if status == "accepted":
        keep_newest_accepted(session, [row.image_sha256 for row in rows])
        session.expire_all()  # one of them may have been superseded by a newer accepted correction
    return [snapshot(row) for row in rows]


def find_for_review(
    session: Session, action: str, ids: list[str], batch: str | None, allowed: tuple[str, ...]
) -> list[CorrectionRow]:
    """The rows a person's action names: each id (or unique prefix) must name one correction, the batch (or a unique
    prefix of it) must hold rows in an allowed status; every row found must be in an allowed status."""
    rows: dict[str, CorrectionRow] = {}
    problems: list[str] = []
    for given in ids:
        found = session.scalars(select(CorrectionRow).where(CorrectionRow.id.startswith(given, autoescape=True)).limit(2)).all()
        if len(found) != 1:
            problems.append(f"{given}: {'no correction has this id' if not found else 'more than one correction starts with it'}")
        elif found[0].status not in allowed:
            problems.append(f"{given}: is {found[0].status}, not {' or '.join(allowed)}")
        else:
            rows[found[0].id] = found[0]
    if batch is not None:
        batches = set(
            session.scalars(
                select(CorrectionRow.batch_id)
                .where(CorrectionRow.batch_id.startswith(batch, autoescape=True), CorrectionRow.status.in_(allowed))
                .distinct()
            )
        )
        if len(batches) != 1:
            problems.append(
                f"batch {batch}: "
                + (f"no batch with {' or '.join(allowed)} corrections" if not batches else "more than one batch starts with it")
            )
        else:
            in_batch = select(CorrectionRow).where(CorrectionRow.batch_id == batches.pop(), CorrectionRow.status.in_(allowed))
            for row in session.scalars(in_batch):
                rows[row.id] = row
    if problems:
        raise InvalidInput(f"cannot {action}: " + "; ".join(problems) + " (nothing was changed)")
    return sorted(rows.values(), key=lambda r: (r.created_at, r.id))
