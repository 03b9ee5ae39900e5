"""The correction store: reviewers' corrected labels, their content-addressed images, and their lifecycle.

A correction is ``pending`` until a retrain claims it (``claimed``, tagged with the retrain's batch id), then
``applied`` once the retrained model is registered, or back to ``pending`` if the retrain failed. A newer
correction of the same image makes the older pending one ``superseded``.

On SQLite a write waits up to the busy timeout (30 s; ``?timeout=SECONDS`` in the URL) for another
connection's write lock, then raises :class:`CorrectionStoreBusy` with nothing written.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

from sqlalchemy import DateTime, Engine, ForeignKey, String, Text, create_engine, event, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, aliased, mapped_column
from sqlalchemy.types import TypeDecorator

from yolo_retrain import migrations
from yolo_retrain.config import Settings
from yolo_retrain.errors import DuplicateCorrection, InvalidInput, TransientError
from yolo_retrain.labels import check_image, format_labels, image_suffix, parse_labels, read_class_names, safe_filename

Status = Literal["pending", "claimed", "applied", "superseded"]
STATUSES: tuple[Status, ...] = get_args(Status)

DEFAULT_BUSY_TIMEOUT_S = 30.0


class CorrectionStoreBusy(TransientError):
    """Another connection held the database's write lock past the busy timeout; nothing was written.

    Transient, so Prefect's task retries try again; the API answers 503.
    """


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
        """The store configured by ``settings``; class names come from ``settings.base_data``."""
        assert settings.base_data is not None and settings.corrections_db_url is not None  # filled by Settings
        return cls(settings.corrections_db_url, settings.corrections_dir, read_class_names(settings.base_data))

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
        file raises InvalidInput naming it, and nothing is stored.
        """
        directory = Path(directory)
        images_dir, labels_dir = directory / "images", directory / "labels"
        for sub in (images_dir, labels_dir):
            if not sub.is_dir():
                raise InvalidInput(f"{sub}: missing folder (expected {directory}/images and {directory}/labels)")
        images = _visible_files(images_dir)
        if not images:
            raise InvalidInput(f"{images_dir}: no images to import")
        stems = {p.stem for p in images}
        for label in _visible_files(labels_dir):
            if label.suffix != ".txt" or label.stem not in stems:
                raise InvalidInput(f"{label}: label file without a matching image in {images_dir}")
        candidates = []
        for image in images:
            label = labels_dir / f"{image.stem}.txt"
            if not label.is_file():
                raise InvalidInput(f"{image}: missing label file {label}")
            candidates.append(self._validate(image, label, None))
        return self._store(candidates, source_model_version, author, created_at)

    def _validate(self, image: Path | bytes, labels: str | Path, image_name: str | None) -> _Candidate:
        """Read and check one image and its labels; nothing is written."""
        if isinstance(image, bytes):
            data, source = image, image_name or "<image bytes>"
        else:
            data, source = _read_bytes(Path(image)), str(image)
        width, height = check_image(data, source)
        sha = hashlib.sha256(data).hexdigest()
        suffix = image_suffix(data)
        default_name = f"{sha}{suffix}" if isinstance(image, bytes) else Path(image).name
        name = safe_filename(image_name if image_name is not None else default_name)
        if isinstance(labels, Path):
            text, label_source = _read_text(labels), str(labels)
        else:
            text, label_source = labels, f"labels of {source}"
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
        written: builtins.list[Path] = []
        with self._busy("store the correction"), Session(self._writer, expire_on_commit=False) as session:
            try:
                rows = self._insert(session, candidates, when, source_model_version, author, written)
                session.commit()
            except BaseException:
                for path in written:  # before the rollback drops the write lock: no other writer used these blobs
                    path.unlink(missing_ok=True)
                session.rollback()
                raise
        return [_snapshot(r) for r in rows]

    def _insert(
        self,
        session: Session,
        candidates: builtins.list[_Candidate],
        when: datetime,
        source_model_version: str | None,
        author: str | None,
        written: builtins.list[Path],
    ) -> builtins.list[_Row]:
        """Refuse duplicates, write new blobs (listed in ``written``), supersede and insert rows; not committed."""
        seen: set[tuple[str, str]] = set()
        unapplied: dict[str, builtins.list[Any]] = {}  # image sha256 -> its pending and claimed rows
        for c in candidates:
            key = (c.sha256, c.label_text)
            # One query per image serves both the duplicate check and, below, the superseding.
            rows_of_image = unapplied.setdefault(
                c.sha256,
                list(
                    session.execute(
                        select(_Row.id, _Row.label_text, _Row.status, _Row.created_at).where(
                            _Row.image_sha256 == c.sha256, _Row.status.in_(("pending", "claimed"))
                        )
                    )
                ),
            )
            dup = next((r.id for r in rows_of_image if r.label_text == c.label_text), None)
            if dup is not None or key in seen:
                raise DuplicateCorrection(
                    f"{c.name}: the same image with the same labels is already stored and not yet applied"
                    + (f" (correction {dup})" if dup else "")
                )
            seen.add(key)
        rows = []
        for c in candidates:
            path = self._write_blob(c, written)
            pending_of_image = [r for r in unapplied[c.sha256] if r.status == "pending"]
            newer_pending = any(r.created_at > when for r in pending_of_image)
            if any(r.created_at <= when for r in pending_of_image):
                session.execute(
                    update(_Row)
                    .where(_Row.image_sha256 == c.sha256, _Row.status == "pending", _Row.created_at <= when)
                    .values(status="superseded")
                )
            row = _Row(
                id=uuid.uuid4().hex,
                image_sha256=c.sha256,
                image_path=str(path),
                original_name=c.name,
                label_text=c.label_text,
                num_boxes=c.num_boxes,
                width=c.width,
                height=c.height,
                source_model_version=source_model_version,
                author=author,
                created_at=when,
                status="superseded" if newer_pending else "pending",
            )
            session.add(row)
            session.flush()
            rows.append(row)
            unapplied[c.sha256].append(row)  # a later image of this batch supersedes it, as a later call would
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

    def mark_applied(self, batch_id: str, model_version: str) -> int:
        """Record that ``batch_id``'s claimed corrections are in ``model_version``.

        Returns how many were marked; 0 when called again (idempotent).
        """
        with self._busy(f"mark batch {batch_id} applied"), Session(self._writer) as session, session.begin():
            result = session.execute(
                update(_Row)
                .where(_Row.status == "claimed", _Row.batch_id == batch_id)
                .values(status="applied", applied_version=model_version, applied_at=datetime.now(timezone.utc))
            )
        return result.rowcount


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


def _diff_snapshot(row: _DiffRow) -> CorrectionDiff:
    return CorrectionDiff(**{f.name: getattr(row, f.name) for f in dataclasses.fields(CorrectionDiff) if f.name != "diff"}, diff=json.loads(row.diff))


def _claimed_query(batch_id: str) -> Any:
    return select(_Row).where(_Row.status == "claimed", _Row.batch_id == batch_id).order_by(_Row.created_at, _Row.id)


def _check_status(status: str) -> str:
    if status not in STATUSES:
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


def _visible_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


__all__ = ["STATUSES", "Correction", "CorrectionDiff", "CorrectionStore", "CorrectionStoreBusy", "Status"]
