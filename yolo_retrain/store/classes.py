"""The class-names contract: stored labels are class ids, so the project's classes may only grow at the end.

In another order, or with a class renamed, every stored id would silently mean another class. The names are
recorded on the store's first open; a later open with other names is refused (:class:`ClassContractChanged`,
nothing written). Classes appended at the end are accepted and recorded (the ids already stored keep their meaning).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yolo_retrain.errors import InvalidInput
from yolo_retrain.store.engine import Database
from yolo_retrain.store.schema import ProjectClassesRow


class ClassContractChanged(InvalidInput):
    """The base data.yaml's class names are not those the stored labels' class ids mean."""


def check_class_contract(db: Database, class_names: list[str]) -> None:
    """Record ``class_names`` on the first open; refuse names that are not the recorded ones plus new ones at the end.

    The decision is taken again inside the write transaction, on the record as it is then (locked with FOR UPDATE
    on PostgreSQL; SQLite's write transaction holds the whole database): of two concurrent first opens with other
    names, or two appending other classes, the second sees the first's record and is refused.
    """
    with Session(db.reader) as session:
        row = session.get(ProjectClassesRow, 1)
        recorded = None if row is None else json.loads(row.names)
    if recorded == class_names:
        return  # the usual case: one indexed read
    _refuse_unless_extends(db, recorded, class_names)
    for _attempt in range(2):
        try:
            with Session(db.writer) as session, session.begin():
                current = session.get(ProjectClassesRow, 1, with_for_update=True)
                recorded = None if current is None else json.loads(current.names)
                _refuse_unless_extends(db, recorded, class_names)
                names, now = json.dumps(class_names), datetime.now(timezone.utc)
                if current is None:
                    session.add(ProjectClassesRow(id=1, names=names, recorded_at=now))
                elif recorded != class_names:  # classes appended at the end
                    current.names, current.recorded_at = names, now
            return
        except IntegrityError:
            continue  # a concurrent first open recorded its names first: decide again against them
    raise ClassContractChanged(f"{db.name}: could not record the classes {class_names} (another open kept recording others)")


def _refuse_unless_extends(db: Database, recorded: list[str] | None, class_names: list[str]) -> None:
    if recorded is not None and class_names[: len(recorded)] != recorded:
        raise ClassContractChanged(
            f"the base data.yaml's classes {class_names} are not {recorded}, the classes the corrections in "
            f"{db.name} were stored with (their labels' class ids mean those, in that order; new classes may "
            "only be added at the end). Restore the names in the base data.yaml, or use a new correction store "
            "for the new classes (YOLO_RETRAIN_CORRECTIONS_DB_URL)"
        )
