"""The correction store: reviewers' corrected labels, their content-addressed images, and their lifecycle.

::

    pending ──claim──► claimed ──gate promotes the version──► accepted   (in every later retrain's data)
       ▲                  │    └─gate rejects the version───► rejected   (held for a person: requeue, accept, drop)
       │                  └─retrain failed or skipped: release──► pending
       └──────────── requeue (a person) ◄──── rejected ──drop──► dropped  (kept as a record, never trained on)

A newer correction of the same image makes an older ``pending`` or ``rejected`` one ``superseded``; a newly
accepted one supersedes the image's older accepted one, so ``accepted`` holds one correction per image. Every
retrain learns from all accepted corrections plus its own batch. Rolling the model back does not touch them.

The schema is versioned (``yolo_retrain/migrations``) and upgraded when a store opens. A store from the release
before the lifecycle has ``applied`` rows; they are sorted into accepted or rejected by their version's gate
decision in MLflow's registry (:meth:`CorrectionStore.sort_applied`, run by :meth:`CorrectionStore.from_settings`).

On SQLite a write waits up to the busy timeout (30 s; ``?timeout=SECONDS`` in the URL) for another
connection's write lock, then raises :class:`CorrectionStoreBusy` with nothing written.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

from sqlalchemy import DateTime, Engine, ForeignKey, String, Text, and_, create_engine, event, func, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, aliased, mapped_column
from sqlalchemy.types import TypeDecorator

from yolo_retrain import migrations
from yolo_retrain.config import Settings
from yolo_retrain.data_yaml import read_class_names
from yolo_retrain.errors import DuplicateCorrection, InvalidInput, TransientError
from yolo_retrain.gate import GateDecision
from yolo_retrain.labels import (
    check_image,
    format_labels,
    image_suffix,
    parse_labels,
    read_image_file,
    read_label_file,
    safe_filename,
)

Status = Literal["pending", "claimed", "accepted", "rejected", "superseded", "dropped"]
STATUSES: tuple[Status, ...] = get_args(Status)
LEGACY_APPLIED = "applied"  # rows of a store from before the lifecycle, until sort_applied sorts them
_DONE = {"requeue": "requeued", "accept": "accepted", "drop": "dropped"}
REVIEWABLE: dict[str, tuple[str, ...]] = {  # a person's action -> the statuses it applies to
    "requeue": ("rejected",),
    "accept": ("rejected",),
    "drop": ("rejected", "pending"),
}

DEFAULT_BUSY_TIMEOUT_S = 30.0
log = logging.getLogger(__name__)


class CorrectionStoreBusy(TransientError):
    """Another connection held the database's write lock past the busy timeout; nothing was written.

    Transient, so Prefect's task retries try again; the API answers 503.
    """


class ClassContractChanged(InvalidInput):
    """The base data.yaml's class names are not those the stored labels' class ids mean."""


class _UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value} (use a timezone-aware one)")
        utc = value.astimezone(timezone.utc)
        # SQLite has no time zones: store naive UTC. Elsewhere (PostgreSQL timestamptz) bind the aware value,
        # so the session's time zone cannot shift it.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class _Base(DeclarativeBase):
    pass


class _Row(_Base):
    __tablename__ = "corrections"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    image_path: Mapped[str] = mapped_column(Text)
    original_name: Mapped[str] = mapped_column(Text)
    label_text: Mapped[str] = mapped_column(Text)
    num_boxes: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    source_model_version: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), index=True)
    applied_version: Mapped[str | None] = mapped_column(Text)  # the version it was trained into (accepted/rejected)
    applied_at: Mapped[datetime | None] = mapped_column(_UTCDateTime)
    status_reason: Mapped[str | None] = mapped_column(Text)  # the gate's reason, or what a person did
    reviewed_by: Mapped[str | None] = mapped_column(Text)  # who requeued, accepted or dropped it
    reviewed_at: Mapped[datetime | None] = mapped_column(_UTCDateTime)


class _Flag(_Base):
    """Small named switches kept with the corrections (e.g. whether the next threshold crossing is announced)."""

    __tablename__ = "flags"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bool]


class _ProjectClasses(_Base):
    """The class names the stored labels' ids mean (one row), recorded on the store's first open."""

    __tablename__ = "project_classes"

    id: Mapped[int] = mapped_column(primary_key=True)
    names: Mapped[str] = mapped_column(Text)  # JSON list, in id order
    recorded_at: Mapped[datetime] = mapped_column(_UTCDateTime)


THRESHOLD_ARMED = "threshold_armed"


class _DiffRow(_Base):
    """The prediction a correction corrects and the reviewer's changes to it (Label Studio corrections, #13)."""

    __tablename__ = "correction_diffs"

    correction_id: Mapped[str] = mapped_column(String(32), ForeignKey("corrections.id"), primary_key=True)
    source_key: Mapped[str | None] = mapped_column(String(255), index=True)  # e.g. the Label Studio annotation
    source_digest: Mapped[str | None] = mapped_column(String(64))  # the delivered content: a redelivery matches it
    predicted_version: Mapped[str | None] = mapped_column(Text)
    prediction_source: Mapped[str] = mapped_column(Text)
    predicted_labels: Mapped[str] = mapped_column(Text)  # YOLO label text of the model's boxes
    diff: Mapped[str] = mapped_column(Text)  # JSON: labelstudio.diff.BoxDiff.to_json()
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime)


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


_FIELDS = [f.name for f in dataclasses.fields(Correction)]


def _snapshot(row: _Row) -> Correction:
    return Correction(**{name: getattr(row, name) for name in _FIELDS})


@dataclass(frozen=True)
class Submission:
    """One correction to store: an image (path or bytes) and its YOLO label text (text or a ``.txt`` path).

    ``labels_source`` names text labels in messages (e.g. the export's label file they were mapped from).
    """

    image: Path | bytes
    labels: str | Path
    image_name: str | None = None
    labels_source: str | None = None


@dataclass(frozen=True)
class _Candidate:
    """A fully validated correction not yet stored."""

    data: bytes
    sha256: str
    suffix: str
    name: str
    label_text: str
    num_boxes: int
    width: int
    height: int


@dataclass(frozen=True)
class _Provenance:
    """Who made the corrections being stored, and when."""

    when: datetime
    source_model_version: str | None
    author: str | None


@dataclass(frozen=True)
class _OpenRow:
    """A stored correction of an image that a new one may duplicate or replace: pending, claimed or rejected."""

    id: str
    label_text: str
    status: str
    created_at: datetime


_OPEN = ("pending", "claimed", "rejected")
_REPLACEABLE = ("pending", "rejected")  # a claimed one is in a running retrain: that retrain decides it


def _open_rows(session: Session, image_sha256: str) -> builtins.list[_OpenRow]:
    """The image's pending, claimed and rejected corrections (one query serves the duplicate and superseding checks)."""
    query = select(_Row.id, _Row.label_text, _Row.status, _Row.created_at).where(
        _Row.image_sha256 == image_sha256, _Row.status.in_(_OPEN)
    )
    return [_OpenRow(*r) for r in session.execute(query)]


def _refuse_duplicates(candidates: builtins.list[_Candidate], open_rows: dict[str, builtins.list[_OpenRow]]) -> None:
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


def _new_row(c: _Candidate, path: Path, provenance: _Provenance) -> _Row:
    return _Row(
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


def _supersede_older(session: Session, new: _Row, open_rows: builtins.list[_OpenRow]) -> bool:
    """The image's older pending and rejected corrections become superseded by ``new``; True if a newer one exists
    (a backdated ``new``, which is then the superseded one)."""
    replaceable = [r for r in open_rows if r.status in _REPLACEABLE]
    if any(r.created_at <= new.created_at for r in replaceable):
        session.execute(
            update(_Row)
            .where(
                _Row.image_sha256 == new.image_sha256,
                _Row.status.in_(_REPLACEABLE),
                _Row.created_at <= new.created_at,
            )
            .values(status="superseded", status_reason=f"superseded by correction {new.id}")
        )
    return any(r.created_at > new.created_at for r in replaceable)


class CorrectionStore:
    """Corrections in a SQL database (any SQLAlchemy URL; SQLite in WAL mode by default) plus image blobs on disk."""

    def __init__(self, url: str, blobs_dir: Path, class_names: builtins.list[str]) -> None:
        self.blobs_dir = Path(blobs_dir)
        self.class_names = list(class_names)
        self._engine, self.busy_timeout_s = _make_engine(url)
        # Writes on SQLite take the write lock up front (BEGIN IMMEDIATE): no read-then-upgrade deadlocks.
        self._writer = self._engine.execution_options(sqlite_immediate=True)
        with self._busy("open the store"):
            migrations.upgrade(self._engine, self._writer)
            self._create_flag(THRESHOLD_ARMED, True)
            self._check_class_contract()

    def _check_class_contract(self) -> None:
        """Labels are stored as class ids, so the project's classes may only grow at the end: in another order, or
        with a class renamed, every stored id would silently mean another class. The names are recorded on the
        first open; later opens with other names are refused (ClassContractChanged, nothing written)."""
        with Session(self._engine) as session:
            row = session.get(_ProjectClasses, 1)
            recorded = None if row is None else json.loads(row.names)
        if recorded == self.class_names:
            return  # the usual case: one indexed read
        if recorded is not None and self.class_names[: len(recorded)] != recorded:
            database = self._engine.url.database or self._engine.url.render_as_string(hide_password=True)
            raise ClassContractChanged(
                f"the base data.yaml's classes {self.class_names} are not {recorded}, the classes the corrections in "
                f"{database} were stored with (their labels' class ids mean those, in that order; new classes may "
                "only be added at the end). Restore the names in the base data.yaml, or use a new correction store "
                "for the new classes (YOLO_RETRAIN_CORRECTIONS_DB_URL)"
            )
        try:
            with Session(self._writer) as session, session.begin():
                current = session.get(_ProjectClasses, 1)
                names, now = json.dumps(self.class_names), datetime.now(timezone.utc)
                if current is None:
                    session.add(_ProjectClasses(id=1, names=names, recorded_at=now))
                elif json.loads(current.names) == recorded:  # unchanged since read: classes appended at the end
                    current.names, current.recorded_at = names, now
        except IntegrityError:
            pass  # a concurrent first open recorded them; the next open checks against its record

    def _create_flag(self, name: str, value: bool) -> None:
        """Insert the flag row once; a concurrent opener inserting it first is fine."""
        try:
            with Session(self._writer) as session, session.begin():
                if session.get(_Flag, name) is None:
                    session.add(_Flag(name=name, value=value))
        except IntegrityError:
            pass

    @classmethod
    def from_settings(cls, settings: Settings) -> CorrectionStore:
        """The store configured by ``settings``; class names come from ``settings.base_data``.

        Rows of a store from before the lifecycle (``applied``) are sorted by their version's gate decision in the
        configured model registry. If the registry cannot be reached they stay ``applied`` (out of the pending
        count and of datasets) and the next open sorts them; a retrain sorts them or fails before claiming.
        """
        assert settings.base_data is not None and settings.corrections_db_url is not None  # filled by Settings
        store = cls(settings.corrections_db_url, settings.corrections_dir, read_class_names(settings.base_data))
        try:
            store.sort_applied(registry_decisions(settings))
        except Exception as exc:  # noqa: BLE001 — a tracking server that is down must not stop the intake
            log.warning("could not sort the store's applied corrections yet (model registry: %s)", exc)
        return store

    def __enter__(self) -> CorrectionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    @contextmanager
    def _busy(self, action: str) -> Iterator[None]:
        """Turn SQLite's "database is locked" (after the busy timeout) into a CorrectionStoreBusy naming the database."""
        try:
            yield
        except OperationalError as exc:
            message = str(exc.orig).lower()
            if "locked" not in message and "busy" not in message:
                raise
            database = self._engine.url.database or str(self._engine.url)
            raise CorrectionStoreBusy(
                f"correction database {database} is locked by another connection (waited {self.busy_timeout_s:g} s): "
                f"could not {action}; nothing was written, try again"
            ) from exc

    # Adding ----------------------------------------------------------------------------------
    def add(
        self,
        image: Path | bytes,
        labels: str | Path,
        *,
        image_name: str | None = None,
        source_model_version: str | None = None,
        author: str | None = None,
        created_at: datetime | None = None,
    ) -> Correction:
        """Store one correction: an image (path or bytes) and its YOLO label text (text or a ``.txt`` path).

        Everything is validated before anything is written. Raises InvalidInput naming the bad file (and line),
        DuplicateCorrection if the same image with the same labels is already pending or claimed. Older pending
        corrections of the same image become ``superseded``.
        """
        candidate = self._validate(image, labels, image_name)
        return self._store([candidate], source_model_version, author, created_at)[0]

    def add_many(
        self,
        submissions: builtins.list[Submission],
        *,
        source_model_version: str | None = None,
        author: str | None = None,
        created_at: datetime | None = None,
    ) -> builtins.list[Correction]:
        """Store several corrections, all or nothing: every one is validated before anything is written."""
        candidates = [self._validate(s.image, s.labels, s.image_name, s.labels_source) for s in submissions]
        return self._store(candidates, source_model_version, author, created_at)

    def import_dir(
        self,
        directory: Path,
        *,
        source_model_version: str | None = None,
        author: str | None = None,
        created_at: datetime | None = None,
    ) -> builtins.list[Correction]:
        """Store every image of a YOLO folder (``images/x.jpg`` labelled by ``labels/x.txt``), all or nothing.

        Hidden files are skipped. An image without a label file, a label file without an image, or any invalid
        file raises InvalidInput naming it, and nothing is stored. (Other layouts, and class names matched by
        name: ``intake.import_corrections``.)
        """
        from yolo_retrain.formats import plain

        records = plain.read(Path(directory)).records
        submissions = [Submission(r.image, r.label_text, labels_source=r.label_source) for r in records]
        return self.add_many(
            submissions, source_model_version=source_model_version, author=author, created_at=created_at
        )

    def _validate(
        self, image: Path | bytes, labels: str | Path, image_name: str | None, labels_source: str | None = None
    ) -> _Candidate:
        """Read and check one image and its labels; nothing is written."""
        if isinstance(image, bytes):
            data, source = image, image_name or "<image bytes>"
        else:
            data, source = read_image_file(Path(image)), str(image)
        width, height = check_image(data, source)
        sha = hashlib.sha256(data).hexdigest()
        suffix = image_suffix(data)
        default_name = f"{sha}{suffix}" if isinstance(image, bytes) else Path(image).name
        name = safe_filename(image_name if image_name is not None else default_name)
        if isinstance(labels, Path):
            text, label_source = read_label_file(labels), str(labels)
        else:
            text, label_source = labels, labels_source or f"labels of {source}"
        boxes = parse_labels(text, label_source, len(self.class_names))
        return _Candidate(data, sha, suffix, name, format_labels(boxes), len(boxes), width, height)

    def _store(
        self,
        candidates: builtins.list[_Candidate],
        source_model_version: str | None,
        author: str | None,
        created_at: datetime | None,
    ) -> builtins.list[Correction]:
        """Insert validated candidates in one transaction; blobs are written only once no duplicate was found."""
        when = created_at or datetime.now(timezone.utc)
        if when.tzinfo is None:
            raise InvalidInput(f"created_at {when} has no timezone")
        provenance = _Provenance(when, source_model_version, author)
        written: builtins.list[Path] = []
        with self._busy("store the correction"), Session(self._writer, expire_on_commit=False) as session:
            try:
                rows = self._insert(session, candidates, provenance, written)
                session.commit()
            except BaseException:
                for path in written:  # before the rollback drops the write lock: no other writer used these blobs
                    path.unlink(missing_ok=True)
                session.rollback()
                raise
        return [_snapshot(r) for r in rows]

    def _insert(
        self, session: Session, candidates: builtins.list[_Candidate], provenance: _Provenance, written: builtins.list[Path]
    ) -> builtins.list[_Row]:
        """Refuse duplicates, write new blobs (listed in ``written``), supersede and insert rows; not committed."""
        open_rows = {c.sha256: _open_rows(session, c.sha256) for c in candidates}  # one query per image
        _refuse_duplicates(candidates, open_rows)
        rows = []
        for c in candidates:
            path = self._write_blob(c, written)
            row = _new_row(c, path, provenance)
            if _supersede_older(session, row, open_rows[c.sha256]):
                row.status, row.status_reason = "superseded", "a newer correction of the image was already stored"
            session.add(row)
            session.flush()
            rows.append(row)
            # a later image of this batch supersedes it, as a later call would
            open_rows[c.sha256].append(_OpenRow(row.id, row.label_text, row.status, row.created_at))
        return rows

    def _write_blob(self, c: _Candidate, written: builtins.list[Path]) -> Path:
        """Write the image once under ``images/<sha[:2]>/<sha><suffix>``, atomically; a new file goes in ``written``."""
        path = self.blobs_dir / "images" / c.sha256[:2] / f"{c.sha256}{c.suffix}"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            try:
                tmp.write_bytes(c.data)
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            written.append(path)
        return path

    # Reading ---------------------------------------------------------------------------------
    def list(self, status: str | None = None, limit: int | None = None) -> builtins.list[Correction]:
        """Corrections, newest first, optionally only those with ``status``, at most ``limit``."""
        query = select(_Row).order_by(_Row.created_at.desc(), _Row.id).limit(limit)
        if status is not None:
            query = query.where(_Row.status == _check_status(status))
        return self._select(query)

    def get(self, id: str) -> Correction | None:
        """The correction with this id, or None."""
        with Session(self._engine) as session:
            row = session.get(_Row, id)
            return _snapshot(row) if row else None

    def stats(self) -> dict[str, int]:
        """Number of corrections per status (every status, zeros included) plus ``total``."""
        with Session(self._engine) as session:
            counts = {s: n for s, n in session.execute(select(_Row.status, func.count()).group_by(_Row.status))}
        result = {s: counts.get(s, 0) for s in STATUSES}
        if counts.get(LEGACY_APPLIED):  # a store from before the lifecycle, not sorted yet
            result[LEGACY_APPLIED] = counts[LEGACY_APPLIED]
        result["total"] = sum(counts.values())
        return result

    def pending_count(self) -> int:
        """Number of corrections waiting for a retrain."""
        with Session(self._engine) as session:
            return session.scalar(select(func.count()).select_from(_Row).where(_Row.status == "pending")) or 0

    def claimed(self, batch_id: str) -> builtins.list[Correction]:
        """Corrections claimed by ``batch_id``, oldest first."""
        return self._select(_claimed_query(batch_id))

    def claiming_batches(self) -> set[str]:
        """Batch ids that hold claimed corrections (retrains in progress, or orphans of a dead one)."""
        with Session(self._engine) as session:
            return set(session.scalars(select(_Row.batch_id).where(_Row.status == "claimed").distinct()))

    def _select(self, query: Any) -> builtins.list[Correction]:
        with Session(self._engine) as session:
            return [_snapshot(r) for r in session.scalars(query)]

    # Lifecycle -------------------------------------------------------------------------------
    def claim(self, batch_id: str, limit: int | None = None) -> builtins.list[Correction]:
        """Move pending corrections (oldest first) to ``claimed`` by ``batch_id`` and return the batch's claimed rows.

        Idempotent: with the same ``batch_id`` it returns what that batch already holds plus newly pending
        corrections, ``limit`` capping the batch's total. The conditional UPDATE only takes rows still pending,
        so concurrent claimers never share a row.
        """
        with self._busy(f"claim corrections for batch {batch_id}"), Session(self._writer) as session, session.begin():
            room = None
            if limit is not None:
                held = session.scalar(select(func.count()).select_from(_claimed_query(batch_id).subquery())) or 0
                room = max(0, limit - held)
            oldest = select(_Row.id).where(_Row.status == "pending").order_by(_Row.created_at, _Row.id).limit(room)
            session.execute(
                update(_Row)
                .where(_Row.status == "pending", _Row.id.in_(oldest.scalar_subquery()))
                .values(status="claimed", batch_id=batch_id)
            )
            # What is pending from now on is a new backlog: its threshold crossing gets announced again.
            session.execute(update(_Flag).where(_Flag.name == THRESHOLD_ARMED).values(value=True))
        return self.claimed(batch_id)

    # Threshold announcements -----------------------------------------------------------------
    def take_threshold_crossing(self, threshold: int) -> int | None:
        """The pending count if it reached ``threshold`` and that was not announced yet, else None.

        Taking it disarms the announcement until the next claim (or ``rearm_threshold`` if sending failed),
        so one backlog produces one retrain trigger, however many corrections arrive after it.
        """
        if self.pending_count() < threshold:
            # Below it, a plain read decides (no write lock): a concurrent writer that reaches the threshold
            # counts its own row when it asks next.
            return None
        with self._busy("count the pending corrections"), Session(self._writer) as session, session.begin():
            pending = session.scalar(select(func.count()).select_from(_Row).where(_Row.status == "pending")) or 0
            if pending < threshold:
                return None
            # One conditional UPDATE: of two concurrent takers (PostgreSQL), only one sees it change a row.
            disarmed = session.execute(
                update(_Flag).where(_Flag.name == THRESHOLD_ARMED, _Flag.value.is_(True)).values(value=False)
            )
            return pending if disarmed.rowcount == 1 else None

    def rearm_threshold(self) -> None:
        """Announce the next crossing again (the last announcement could not be delivered)."""
        with self._busy("re-arm the threshold announcement"), Session(self._writer) as session, session.begin():
            session.execute(update(_Flag).where(_Flag.name == THRESHOLD_ARMED).values(value=True))

    def release(self, batch_id: str) -> int:
        """Give a failed retrain's corrections back: ``claimed`` → ``pending``, or ``superseded`` where a newer
        correction of the same image arrived meanwhile. Returns how many left the batch."""
        newer = aliased(_Row)
        has_newer = (
            select(newer.id)
            .where(newer.image_sha256 == _Row.image_sha256, newer.status == "pending")
            .where(newer.created_at >= _Row.created_at)
            .exists()
        )
        mine = (_Row.status == "claimed", _Row.batch_id == batch_id)
        with self._busy(f"release batch {batch_id}"), Session(self._writer) as session, session.begin():
            superseded = session.execute(
                update(_Row).where(*mine, has_newer).values(status="superseded", batch_id=None)
            )
            released = session.execute(update(_Row).where(*mine).values(status="pending", batch_id=None))
        return superseded.rowcount + released.rowcount

    def record_gate_decision(self, batch_id: str, model_version: str, decision: GateDecision) -> int:
        """The batch's claimed corrections went into ``model_version``: ``accepted`` if the gate promoted it, else
        ``rejected`` (held for a person), with the gate's reason. An accepted correction supersedes the older
        accepted one of its image. Returns how many were marked; 0 when called again (idempotent)."""
        status = "accepted" if decision.promote else "rejected"
        with self._busy(f"record the gate's decision for batch {batch_id}"), Session(self._writer) as session, session.begin():
            result = session.execute(
                update(_Row)
                .where(_Row.status == "claimed", _Row.batch_id == batch_id)
                .values(
                    status=status,
                    applied_version=model_version,
                    applied_at=datetime.now(timezone.utc),
                    status_reason=f"gate {decision.label} v{model_version}: {decision.reason}",
                )
            )
            if decision.promote:
                _keep_newest_accepted(session, select(_Row.image_sha256).where(_Row.batch_id == batch_id))
        return result.rowcount

    def training_corrections(self, batch_id: str) -> TrainingCorrections:
        """What the retrain of ``batch_id`` learns from: its claimed batch and every accepted correction."""
        accepted_query = (
            select(*(getattr(_Row, name) for name in AcceptedCorrection._fields))
            .where(_Row.status == "accepted")
            .order_by(_Row.created_at, _Row.id)
        )
        with self._engine.connect() as conn:  # plain rows, not ORM objects: 10 000 of them in ~0.1 s
            accepted = [AcceptedCorrection(*row) for row in conn.execute(accepted_query)]
            held = conn.scalar(select(func.count()).select_from(_Row).where(_Row.status == "rejected")) or 0
        return TrainingCorrections(self.claimed(batch_id), accepted, held)

    # A person's review -----------------------------------------------------------------------
    def requeue(self, ids: Iterable[str] = (), batch: str | None = None, by: str | None = None) -> builtins.list[Correction]:
        """Rejected corrections back to ``pending`` (a person decided they are right): the next retrain takes them.

        ``ids`` are correction ids (or unique prefixes of them); ``batch`` a batch id (or a unique prefix) whose
        rejected corrections are meant. Anything not found or not rejected raises InvalidInput naming it, and
        nothing changes. ``by`` (who) is recorded.
        """
        return self._review("requeue", ids, batch, by, "pending")

    def accept(self, ids: Iterable[str] = (), batch: str | None = None, by: str | None = None) -> builtins.list[Correction]:
        """Rejected corrections become ``accepted`` without another retrain (a person approved them): every later
        retrain learns from them. Same selection and errors as :meth:`requeue`."""
        return self._review("accept", ids, batch, by, "accepted")

    def drop(self, ids: Iterable[str] = (), batch: str | None = None, by: str | None = None) -> builtins.list[Correction]:
        """Rejected (or pending) corrections are discarded: ``dropped``, kept as a record, never trained on. Same
        selection and errors as :meth:`requeue`."""
        return self._review("drop", ids, batch, by, "dropped")

    def _review(
        self, action: str, ids: Iterable[str], batch: str | None, by: str | None, status: str
    ) -> builtins.list[Correction]:
        """Move the rows a person named to ``status``, recording who, when and what they were before."""
        ids = builtins.list(ids)
        if not ids and batch is None:
            raise InvalidInput(f"{action}: give correction ids or a batch id")
        with self._busy(f"{action} corrections"), Session(self._writer, expire_on_commit=False) as session, session.begin():
            rows = _find_for_review(session, action, ids, batch, REVIEWABLE[action])
            now = datetime.now(timezone.utc)
            for row in rows:
                row.status_reason = f"{_DONE[action]} by {by or 'a person'} (was {row.status_reason or row.status})"
                row.status, row.reviewed_by, row.reviewed_at = status, by, now
                if status == "pending":  # a new round: the next claim gives it a batch, the next gate a version
                    row.batch_id = row.applied_version = row.applied_at = None
            session.flush()
            if status == "accepted":
                _keep_newest_accepted(session, [row.image_sha256 for row in rows])
                session.expire_all()  # one of them may have been superseded by a newer accepted correction
            return [_snapshot(row) for row in rows]

    # A store from before the lifecycle -------------------------------------------------------
    def sort_applied(self, decisions: Callable[[set[str]], Mapping[str, GateDecision] | None]) -> int:
        """Sort ``applied`` rows (a store from the release before the lifecycle) into ``accepted`` or ``rejected``
        by the gate's decision on their version; returns how many were sorted.

        ``decisions(versions)`` gives the decision per version (from MLflow's registry), or None when it cannot
        tell (then nothing changes). A version without a recorded decision is held as rejected, for a person.
        """
        with Session(self._engine) as session:
            versions = set(session.scalars(select(_Row.applied_version).where(_Row.status == LEGACY_APPLIED).distinct()))
        if not versions:
            return 0
        found = decisions({v for v in versions if v is not None})
        if found is None:
            return 0
        sorted_rows = 0
        with self._busy("sort the applied corrections"), Session(self._writer) as session, session.begin():
            for version in versions:
                decision = found.get(version) if version is not None else None
                if decision is None:
                    status, reason = "rejected", f"v{version} has no gate decision in the model registry: held for review"
                else:
                    status, reason = ("accepted" if decision.promote else "rejected"), f"gate {decision.label} v{version}: {decision.reason}"
                result = session.execute(
                    update(_Row)
                    .where(_Row.status == LEGACY_APPLIED, _Row.applied_version == version)
                    .values(status=status, status_reason=f"{reason} (sorted when the store was upgraded)")
                )
                sorted_rows += result.rowcount
            _keep_newest_accepted(session, select(_Row.image_sha256).where(_Row.status == "accepted"))
        return sorted_rows

    # Diffs against the model (#13) ---------------------------------------------------------------
    def record_diff(self, diff: CorrectionDiff) -> None:
        """Keep what a stored correction changed against the model's prediction (one row per correction)."""
        row = _DiffRow(**{**dataclasses.asdict(diff), "diff": json.dumps(diff.diff, sort_keys=True)})
        with self._busy("store the correction's diff"), Session(self._writer) as session, session.begin():
            session.merge(row)

    def latest_diff_of_source(self, source_key: str) -> CorrectionDiff | None:
        """The newest diff recorded for a source (e.g. one Label Studio annotation), if any."""
        query = select(_DiffRow).where(_DiffRow.source_key == source_key).order_by(_DiffRow.created_at.desc())
        with Session(self._engine) as session:
            row = session.scalars(query.limit(1)).first()
            return _diff_snapshot(row) if row else None

    def diffs(self, correction_ids: builtins.list[str]) -> builtins.list[CorrectionDiff]:
        """The recorded diffs of these corrections (corrections without one are left out)."""
        found: builtins.list[CorrectionDiff] = []
        with Session(self._engine) as session:
            for start in range(0, len(correction_ids), 500):  # bounded IN lists
                chunk = correction_ids[start : start + 500]
                found += [_diff_snapshot(r) for r in session.scalars(select(_DiffRow).where(_DiffRow.correction_id.in_(chunk)))]
        return found



class AcceptedCorrection(NamedTuple):
    """What a dataset needs of an accepted correction (fits ``dataset.CorrectionLike``); a tuple because a retrain
    reads every accepted correction of the store."""

    id: str
    image_sha256: str
    image_path: str
    label_text: str
    created_at: datetime


@dataclass(frozen=True)
class TrainingCorrections:
    """What one retrain learns from, besides the base data."""

    batch: builtins.list[Correction]  # claimed by this retrain
    accepted: builtins.list[AcceptedCorrection]  # accepted earlier (promoted by the gate, or approved by a person)
    held_rejected: int  # rejected corrections waiting for a person: not in this retrain


def _keep_newest_accepted(session: Session, images: Any) -> None:
    """Of the accepted corrections of ``images`` (sha256s, or a query of them), only the newest stays accepted
    (newest ``created_at``, ties by id, as the dataset picks); the older ones become superseded."""
    newer = aliased(_Row)
    has_newer = (
        select(newer.id)
        .where(newer.image_sha256 == _Row.image_sha256, newer.status == "accepted")
        .where(or_(newer.created_at > _Row.created_at, and_(newer.created_at == _Row.created_at, newer.id > _Row.id)))
        .exists()
    )
    session.execute(
        update(_Row)
        .where(_Row.status == "accepted", _Row.image_sha256.in_(images), has_newer)
        .values(status="superseded", status_reason="a newer correction of the image was accepted")
        .execution_options(synchronize_session=False)
    )


def _find_for_review(
    session: Session, action: str, ids: builtins.list[str], batch: str | None, allowed: tuple[str, ...]
) -> builtins.list[_Row]:
    """The rows a person's action names: each id (or unique prefix) must name one correction, the batch (or a unique
    prefix of it) must hold rows in an allowed status; every row found must be in an allowed status."""
    rows: dict[str, _Row] = {}
    problems: builtins.list[str] = []
    for given in ids:
        found = session.scalars(select(_Row).where(_Row.id.startswith(given, autoescape=True)).limit(2)).all()
        if len(found) != 1:
            problems.append(f"{given}: {'no correction has this id' if not found else 'more than one correction starts with it'}")
        elif found[0].status not in allowed:
            problems.append(f"{given}: is {found[0].status}, not {' or '.join(allowed)}")
        else:
            rows[found[0].id] = found[0]
    if batch is not None:
        batches = set(
            session.scalars(
                select(_Row.batch_id).where(_Row.batch_id.startswith(batch, autoescape=True), _Row.status.in_(allowed)).distinct()
            )
        )
        if len(batches) != 1:
            problems.append(
                f"batch {batch}: "
                + (f"no batch with {' or '.join(allowed)} corrections" if not batches else "more than one batch starts with it")
            )
        else:
            for row in session.scalars(select(_Row).where(_Row.batch_id == batches.pop(), _Row.status.in_(allowed))):
                rows[row.id] = row
    if problems:
        raise InvalidInput(f"cannot {action}: " + "; ".join(problems) + " (nothing was changed)")
    return sorted(rows.values(), key=lambda r: (r.created_at, r.id))


def registry_decisions(settings: Settings) -> Callable[[set[str]], dict[str, GateDecision] | None]:
    """The gate's decision on versions of the configured model, read from MLflow's registry when asked."""

    def lookup(versions: set[str]) -> dict[str, GateDecision] | None:
        from yolo_retrain import registry, tracking  # MLflow is imported only if a store needs sorting

        return registry.gate_decisions(tracking.client_for(settings), settings.model_name, versions)

    return lookup


def _diff_snapshot(row: _DiffRow) -> CorrectionDiff:
    return CorrectionDiff(**{f.name: getattr(row, f.name) for f in dataclasses.fields(CorrectionDiff) if f.name != "diff"}, diff=json.loads(row.diff))


def _claimed_query(batch_id: str) -> Any:
    return select(_Row).where(_Row.status == "claimed", _Row.batch_id == batch_id).order_by(_Row.created_at, _Row.id)


def _check_status(status: str) -> str:
    if status not in (*STATUSES, LEGACY_APPLIED):
        raise InvalidInput(f"unknown status {status!r} (expected one of {', '.join(STATUSES)})")
    return status


def _make_engine(url: str) -> tuple[Engine, float]:
    """An engine for ``url`` and its busy timeout; on SQLite: WAL, the busy timeout, IMMEDIATE write transactions.

    The busy timeout (how long a write waits for another connection's lock) is ``?timeout=SECONDS`` in a SQLite
    URL, default 30 s.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url), DEFAULT_BUSY_TIMEOUT_S
    try:
        busy_s = float(parsed.query.get("timeout", DEFAULT_BUSY_TIMEOUT_S))
    except (TypeError, ValueError):
        raise InvalidInput(f"{url}: 'timeout' must be a number of seconds") from None
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_s})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN itself
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_s * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "BEGIN")

    return engine, busy_s


__all__ = ["STATUSES", "AcceptedCorrection", "Correction", "ClassContractChanged", "CorrectionStore", "CorrectionDiff", "CorrectionStoreBusy", "Status", "Submission", "TrainingCorrections"]
