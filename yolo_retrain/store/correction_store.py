"""``CorrectionStore``: the one object the rest of the code uses; it opens the database and composes the parts.

Each rule lives in one module of this package: ``schema`` (tables, statuses, UTC times), ``engine`` (connections,
busy timeout), ``classes`` (the class-names contract), ``validation`` and ``adding`` (intake: checks, duplicates,
supersede), ``image_locks`` (one writer per image), ``blobs``, ``lifecycle`` (claim, release, the gate's decision),
``review`` (a person's decisions), ``withdrawal`` (a deleted source), ``threshold`` (one announcement per backlog),
``diffs``, ``legacy`` (sorting ``applied`` rows), ``queries``, ``records`` (the snapshots handed out).
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.orm import Session

from yolo_retrain import migrations
from yolo_retrain.config import Settings
from yolo_retrain.data_yaml import read_class_names
from yolo_retrain.errors import InvalidInput
from yolo_retrain.gate import GateDecision
from yolo_retrain.store import adding, diffs, legacy, lifecycle, queries, review, withdrawal
from yolo_retrain.store import threshold as threshold_flag
from yolo_retrain.store.classes import check_class_contract
from yolo_retrain.store.engine import Database
from yolo_retrain.store.records import Correction, CorrectionDiff, ScreenedBatch, SourceDiff, TrainingCorrections, snapshot
from yolo_retrain.store.schema import CorrectionRow
from yolo_retrain.store.validation import Candidate, Submission, validate

log = logging.getLogger(__name__)


class CorrectionStore:
    """Corrections in a SQL database (any SQLAlchemy URL; SQLite in WAL mode by default) plus image blobs on disk."""

    def __init__(self, url: str, blobs_dir: Path, class_names: builtins.list[str]) -> None:
        self.blobs_dir = Path(blobs_dir)
        self.class_names = list(class_names)
        self._db = Database(url)
        self.busy_timeout_s = self._db.busy_timeout_s
        with self._db.busy("open the store"):
            migrations.upgrade(self._db.reader, self._db.writer)
            threshold_flag.create_flag(self._db, threshold_flag.THRESHOLD_ARMED, True)
            check_class_contract(self._db, self.class_names)

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
            store.sort_applied(legacy.registry_decisions(settings))
        except Exception as exc:  # noqa: BLE001 — a tracking server that is down must not stop the intake
            log.warning("could not sort the store's applied corrections yet (model registry: %s)", exc)
        return store

    def __enter__(self) -> CorrectionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self._db.dispose()

    def _read(self) -> Session:
        return Session(self._db.reader)

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
        source: SourceDiff | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Correction:
        """Store one correction: an image (path or bytes) and its YOLO label text (text or a ``.txt`` path).

        Everything is validated before anything is written. Raises InvalidInput naming the bad file (and line),
        DuplicateCorrection if the same image with the same labels is already pending or claimed, or if ``source``
        (where it comes from, with its diff against the model: stored in the same transaction) delivered the same
        content before. Older pending corrections of the same image become ``superseded``. ``metadata`` (camera,
        site...: names to strings) is checked and kept with it: the gate slices the holdout by it.
        """
        candidate = validate(image, labels, image_name, None, len(self.class_names), metadata)
        return self._store([candidate], source_model_version, author, created_at, source)[0]

    def add_many(
        self,
        submissions: builtins.list[Submission],
        *,
        source_model_version: str | None = None,
        author: str | None = None,
        created_at: datetime | None = None,
    ) -> builtins.list[Correction]:
        """Store several corrections, all or nothing: every one is validated before anything is written."""
        candidates = [
            validate(s.image, s.labels, s.image_name, s.labels_source, len(self.class_names), s.metadata)
            for s in submissions
        ]
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

    def _store(
        self,
        candidates: builtins.list[Candidate],
        source_model_version: str | None,
        author: str | None,
        created_at: datetime | None,
        source: SourceDiff | None = None,
    ) -> builtins.list[Correction]:
        when = created_at or datetime.now(timezone.utc)
        if when.tzinfo is None:
            raise InvalidInput(f"created_at {when} has no timezone")
        provenance = adding.Provenance(when, source_model_version, author)
        return adding.store_candidates(self._db, self.blobs_dir, candidates, provenance, source)

    # Reading ---------------------------------------------------------------------------------
    def list(
        self, status: str | None = None, limit: int | None = None, source_deleted: bool | None = None
    ) -> builtins.list[Correction]:
        """Corrections, newest first, optionally only those with ``status``, at most ``limit``; ``source_deleted``:
        only those whose source (a Label Studio annotation) was deleted (True) or was not (False)."""
        with self._read() as session:
            return queries.listing(session, status, limit, source_deleted)

    def get(self, id: str) -> Correction | None:
        """The correction with this id, or None."""
        with self._read() as session:
            row = session.get(CorrectionRow, id)
            return snapshot(row) if row else None

    def stats(self) -> dict[str, int]:
        """Number of corrections per status (every status, zeros included) plus ``total``."""
        with self._read() as session:
            return queries.stats(session)

    def pending_count(self) -> int:
        """Number of corrections waiting for a retrain."""
        with self._read() as session:
            return threshold_flag.pending_count(session)

    def claimed(self, batch_id: str) -> builtins.list[Correction]:
        """Corrections claimed by ``batch_id``, oldest first."""
        with self._read() as session:
            return [snapshot(r) for r in session.scalars(lifecycle.claimed_query(batch_id))]

    def claiming_batches(self) -> set[str]:
        """Batch ids that hold claimed corrections (retrains in progress, or orphans of a dead one)."""
        with self._read() as session:
            return queries.claiming_batches(session)

    def training_corrections(self, batch_id: str) -> TrainingCorrections:
        """What the retrain of ``batch_id`` learns from: its claimed batch and every accepted correction."""
        with self._db.reader.connect() as conn:
            accepted, held = queries.accepted(conn)
        return TrainingCorrections(self.claimed(batch_id), accepted, held)

    # Lifecycle -------------------------------------------------------------------------------
    def claim(self, batch_id: str, limit: int | None = None) -> builtins.list[Correction]:
        """Move pending corrections (oldest first) to ``claimed`` by ``batch_id`` and return the batch's claimed rows.

        Idempotent: with the same ``batch_id`` it returns what that batch already holds plus newly pending
        corrections, ``limit`` capping the batch's total. Concurrent claimers never share a row.
        """
        with self._db.busy(f"claim corrections for batch {batch_id}"), Session(self._db.writer) as session, session.begin():
            lifecycle.claim(session, batch_id, limit)
        return self.claimed(batch_id)

    def release(self, batch_id: str) -> int:
        """Give a failed retrain's corrections back: ``claimed`` → ``pending``, or ``superseded`` where a newer
        correction of the same image arrived meanwhile. Returns how many left the batch."""
        with self._db.busy(f"release batch {batch_id}"), Session(self._db.writer) as session, session.begin():
            return lifecycle.release(session, batch_id)

    def record_gate_decision(self, batch_id: str, model_version: str, decision: GateDecision) -> int:
        """The batch's claimed corrections went into ``model_version``: ``accepted`` if the gate promoted it, else
        ``rejected`` (held for a person), with the gate's reason. An accepted correction supersedes the older
        accepted one of its image. Returns how many were marked; 0 when called again (idempotent)."""
        action = f"record the gate's decision for batch {batch_id}"
        with self._db.busy(action), Session(self._db.writer) as session, session.begin():
            return lifecycle.record_gate_decision(session, batch_id, model_version, decision)

    def record_screened_batch(self, batch_id: str, model_version: str, decision: GateDecision, held: Mapping[str, str]) -> ScreenedBatch:
        """Each claimed correction of the batch on its own merit (screening, not the model's fate): ``suspicious``
        with its reason (id -> reason in ``held``), else ``accepted``; both with ``model_version``. An accepted
        correction supersedes the older accepted one of its image. Called again, it changes nothing."""
        with self._db.busy(f"record the screening of batch {batch_id}"), Session(self._db.writer) as session, session.begin():
            mine = set(lifecycle.claimed_ids(session, batch_id))
            accepted = lifecycle.record_screened_batch(session, batch_id, model_version, decision, held)
        return ScreenedBatch(accepted, {i: why for i, why in held.items() if i in mine})

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
        with self._db.busy("count the pending corrections"), Session(self._db.writer) as session, session.begin():
            return threshold_flag.take_crossing(session, threshold)

    def rearm_threshold(self) -> None:
        """Announce the next crossing again (the last announcement could not be delivered)."""
        with self._db.busy("re-arm the threshold announcement"), Session(self._db.writer) as session, session.begin():
            threshold_flag.arm(session)

    # A person's review -----------------------------------------------------------------------
    def requeue(self, ids: Iterable[str] = (), batch: str | None = None, by: str | None = None) -> builtins.list[Correction]:
        """Rejected corrections back to ``pending`` (a person decided they are right): the next retrain takes them.

        ``ids`` are correction ids (or unique prefixes of them); ``batch`` a batch id (or a unique prefix) whose
        rejected corrections are meant. Anything not found or not rejected raises InvalidInput naming it, and
        nothing changes. ``by`` (who) is recorded.
        """
        return self._review("requeue", ids, batch, by)

    def accept(self, ids: Iterable[str] = (), batch: str | None = None, by: str | None = None) -> builtins.list[Correction]:
        """Rejected corrections become ``accepted`` without another retrain (a person approved them): every later
        retrain learns from them. Same selection and errors as :meth:`requeue`."""
        return self._review("accept", ids, batch, by)

    def drop(self, ids: Iterable[str] = (), batch: str | None = None, by: str | None = None) -> builtins.list[Correction]:
        """Rejected (or pending) corrections are discarded: ``dropped``, kept as a record, never trained on. Same
        selection and errors as :meth:`requeue`."""
        return self._review("drop", ids, batch, by)

    def _review(self, action: str, ids: Iterable[str], batch: str | None, by: str | None) -> builtins.list[Correction]:
        ids = builtins.list(ids)
        if not ids and batch is None:
            raise InvalidInput(f"{action}: give correction ids or a batch id")
        session = Session(self._db.writer, expire_on_commit=False)
        with self._db.busy(f"{action} corrections"), session, session.begin():
            return review.review(session, action, ids, batch, by)

    # A deleted source -------------------------------------------------------------------------
    def withdraw_source(self, source_like: str, why: str) -> withdrawal.Withdrawal:
        """The source of some corrections was deleted (e.g. a reviewer deleted their Label Studio annotation): those
        not yet learned are ``withdrawn``, a claimed one is withdrawn unless its gate promotes it, an accepted one is
        listed for review. ``source_like`` is an SQL LIKE pattern of their source keys; ``why`` says what happened.
        Idempotent: a second call changes nothing."""
        action = f"withdraw the corrections of {source_like}"
        session = Session(self._db.writer, expire_on_commit=False)
        with self._db.busy(action), session, session.begin():
            return withdrawal.withdraw_sources(session, source_like, why, datetime.now(timezone.utc))

    # A store from before the lifecycle -------------------------------------------------------
    def sort_applied(self, decisions: legacy.Decisions) -> int:
        """Sort ``applied`` rows (a store from the release before the lifecycle) into ``accepted`` or ``rejected``
        by the gate's decision on their version; returns how many were sorted.

        ``decisions(versions)`` gives the decision per version (from MLflow's registry), or None when it cannot
        tell (then nothing changes). A version without a recorded decision is held as rejected, for a person.
        """
        return legacy.sort_applied(self._db, decisions)

    # Diffs against the model (#13) ---------------------------------------------------------------
    def record_diff(self, diff: CorrectionDiff) -> None:
        """Keep what a stored correction changed against the model's prediction (one row per correction)."""
        with self._db.busy("store the correction's diff"), Session(self._db.writer) as session, session.begin():
            diffs.record(session, diff)

    def latest_diff_of_source(self, source_key: str) -> CorrectionDiff | None:
        """The newest diff recorded for a source (e.g. one Label Studio annotation), if any."""
        with self._read() as session:
            return diffs.latest_of_source(session, source_key)

    def diffs(self, correction_ids: builtins.list[str]) -> builtins.list[CorrectionDiff]:
        """The recorded diffs of these corrections (corrections without one are left out)."""
        with self._read() as session:
            return diffs.of_corrections(session, correction_ids)
