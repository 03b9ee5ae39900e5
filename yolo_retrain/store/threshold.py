"""The threshold flag: one announcement per backlog of pending corrections, however many arrive after it.

Taking a crossing disarms the flag; a claim (a new backlog starts) or a failed announcement re-arms it.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yolo_retrain.store.engine import Database
from yolo_retrain.store.schema import CorrectionRow, FlagRow

THRESHOLD_ARMED = "threshold_armed"


def create_flag(db: Database, name: str, value: bool) -> None:
    """Insert the flag row once; a concurrent opener inserting it first is fine."""
    try:
        with Session(db.writer) as session, session.begin():
            if session.get(FlagRow, name) is None:
                session.add(FlagRow(name=name, value=value))
    except IntegrityError:
        pass


def arm(session: Session) -> None:
    session.execute(update(FlagRow).where(FlagRow.name == THRESHOLD_ARMED).values(value=True))


def pending_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(CorrectionRow).where(CorrectionRow.status == "pending")) or 0


def take_crossing(session: Session, threshold: int) -> int | None:
    """In a write transaction: the pending count if it reached ``threshold`` and the flag was armed (now disarmed),
    else None."""
    pending = pending_count(session)
    if pending < threshold:
        return None
    # One conditional UPDATE: of two concurrent takers (PostgreSQL), only one sees it change a row.
    disarmed = session.execute(
        update(FlagRow).where(FlagRow.name == THRESHOLD_ARMED, FlagRow.value.is_(True)).values(value=False)
    )
    return pending if disarmed.rowcount == 1 else None
