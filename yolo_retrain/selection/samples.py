"""The review pool's store: posted samples (content-addressed images, their production boxes and metadata) and every
image a selection sent to reviewers, in the ``samples`` table beside the corrections.

A sample is ``waiting`` until a selection picks it (``selected``, with its score and why); an image already
selected, or one with a correction in the store (any status), is never offered again. Retention drops the oldest
``waiting`` samples beyond a count or an age (their blobs too); selected rows stay as the record.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yolo_retrain import migrations
from yolo_retrain.config import Settings
from yolo_retrain.errors import InvalidInput, TransientError
from yolo_retrain.labels import decode_image, image_suffix, safe_filename
from yolo_retrain.labelstudio.convert import ScoredBox
from yolo_retrain.selection.boxes import boxes_json, parse_boxes
from yolo_retrain.selection.capture import CaptureRules, RateLimits
from yolo_retrain.store.blobs import blob_path, write_blob
from yolo_retrain.store.engine import Database
from yolo_retrain.store.schema import CorrectionRow, SampleRow

WAITING, SELECTED = "waiting", "selected"
_CHUNK = 500  # sha256s per IN (...) query


class SampleRateLimited(TransientError):
    """A capture limit (per minute or per day) is reached: the sample was not stored; retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Sample:
    id: str
    image_sha256: str
    image_path: Path
    original_name: str
    source: str
    width: int
    height: int
    production_boxes: list[ScoredBox] | None
    production_model_version: str | None
    meta: dict[str, Any] | None
    created_at: datetime
    status: str
    selection_id: str | None
    score: float | None
    score_detail: dict[str, Any] | None
    review_task: str | None


@dataclass(frozen=True)
class Posted:
    """What became of a posted sample: stored (``sample``), already in the pool (``sample``, ``new`` False) or not
    captured (``skipped`` says why)."""

    sample: Sample | None
    new: bool = False
    skipped: str | None = None
    dropped_by_retention: int = 0


@dataclass(frozen=True)
class SelectedImage:
    """An image a selection picked, as recorded."""

    sha256: str
    path: Path
    name: str
    source: str
    width: int
    height: int
    score: float
    detail: dict[str, Any]
    sample_id: str | None = None


class SampleStore:
    def __init__(self, url: str, blobs_dir: Path, class_names: Sequence[str]) -> None:
        self.blobs_dir = Path(blobs_dir)
        self.class_names = list(class_names)
        self._db = Database(url)
        with self._db.busy("open the sample pool"):
            migrations.upgrade(self._db.reader, self._db.writer)

    @classmethod
    def from_settings(cls, settings: Settings) -> SampleStore:
        from yolo_retrain.data_yaml import read_class_names

        assert settings.corrections_db_url is not None and settings.base_data is not None
        return cls(settings.corrections_db_url, settings.samples_dir, read_class_names(settings.base_data))

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.dispose()

    # Posting ------------------------------------------------------------------------------------
    def post(
        self,
        image: bytes,
        *,
        image_name: str | None = None,
        boxes: str | None = None,
        model_version: str | None = None,
        meta: str | None = None,
        rules: CaptureRules | None = None,
        limits: RateLimits | None = None,
        max_kept: int = 10_000,
        max_age_days: float = 30,
        max_meta_bytes: int = 4096,
        now: datetime | None = None,
    ) -> Posted:
        """Validate and keep one sample (everything is checked before anything is written).

        Raises InvalidInput naming the bad part (image, ``boxes`` JSON by class name, ``meta`` JSON object),
        SampleRateLimited when a limit is reached. A sample the capture rules do not keep is not stored
        (``Posted.skipped`` says why); an image already in the pool is stored once.
        """
        name = safe_filename(image_name or "sample")
        picture = decode_image(image, name)
        production = None if boxes is None else parse_boxes(boxes, self.class_names, "boxes")
        meta_json = _meta(meta, max_meta_bytes)
        skipped = (rules or CaptureRules()).refusal(production)
        if skipped is not None:
            return Posted(None, skipped=skipped)
        now = now or datetime.now(timezone.utc)
        sha = hashlib.sha256(image).hexdigest()
        path = blob_path(self.blobs_dir, sha, image_suffix(image))
        try:
            return self._insert(image, sha, path, name, picture.size, production, model_version, meta_json, limits, max_kept, max_age_days, now)
        except IntegrityError:  # the same image posted at the same moment by another request: it is in the pool once
            with Session(self._db.reader) as session:
                existing = session.scalar(select(SampleRow).where(SampleRow.image_sha256 == sha))
            if existing is None:
                raise
            return Posted(_sample(existing, self.class_names))

    def _insert(self, image: bytes, sha: str, path: Path, name: str, size: tuple[int, int], production: list[ScoredBox] | None,
                model_version: str | None, meta_json: str | None, limits: RateLimits | None, max_kept: int,
                max_age_days: float, now: datetime) -> Posted:
        with self._db.busy("store a sample"), Session(self._db.writer) as session, session.begin():
            existing = session.scalar(select(SampleRow).where(SampleRow.image_sha256 == sha))
            if existing is not None:
                return Posted(_sample(existing, self.class_names))
            if limits is not None:
                counts = [
                    session.scalar(select(func.count()).select_from(SampleRow).where(SampleRow.source == "intake", SampleRow.created_at > now - span))
                    or 0
                    for span in (timedelta(minutes=1), timedelta(days=1))
                ]
                if (why := limits.exceeded(*counts)) is not None:
                    raise SampleRateLimited(f"sample not stored: {why[0]}", why[1])
            write_blob(path, image)  # before the row commits: a row never names a missing file
            row = SampleRow(
                id=uuid.uuid4().hex, image_sha256=sha, image_path=str(path), original_name=name, source="intake",
                width=size[0], height=size[1],
                production_boxes=None if production is None else boxes_json(production, self.class_names),
                production_model_version=model_version, meta=meta_json, created_at=now, status=WAITING,
            )
            session.add(row)
            session.flush()
            stored = _sample(row, self.class_names)
            dropped = self._retire(session, max_kept, max_age_days, now)
        _unlink(dropped)  # after the commit: a row never names a missing file
        return Posted(stored, new=True, dropped_by_retention=len(dropped))

    def retire(self, max_kept: int, max_age_days: float, now: datetime | None = None) -> list[str]:
        """Apply the retention limits now; the ids of the samples dropped."""
        with self._db.busy("apply the sample retention"), Session(self._db.writer) as session, session.begin():
            dropped = self._retire(session, max_kept, max_age_days, now or datetime.now(timezone.utc))
        _unlink(dropped)
        return [sample_id for sample_id, _ in dropped]

    def _retire(self, session: Session, max_kept: int, max_age_days: float, now: datetime) -> list[tuple[str, str]]:
        waiting = select(SampleRow.id, SampleRow.image_path).where(SampleRow.status == WAITING, SampleRow.source == "intake")
        old = session.execute(waiting.where(SampleRow.created_at < now - timedelta(days=max_age_days))).all()
        beyond = session.execute(
            waiting.where(SampleRow.created_at >= now - timedelta(days=max_age_days))
            .order_by(SampleRow.created_at.desc(), SampleRow.id)
            .offset(max_kept)
        ).all()
        gone = [(r.id, r.image_path) for r in (*old, *beyond)]
        if gone:
            session.execute(delete(SampleRow).where(SampleRow.id.in_([sample_id for sample_id, _ in gone])))
        return gone

    # Reading ------------------------------------------------------------------------------------
    def waiting(self) -> Iterator[Sample]:
        """Posted samples no selection picked yet, oldest first (read in pages: the pool may be large)."""
        last: tuple[datetime, str] | None = None
        while True:
            query = select(SampleRow).where(SampleRow.status == WAITING).order_by(SampleRow.created_at, SampleRow.id).limit(_CHUNK)
            if last is not None:
                query = query.where((SampleRow.created_at > last[0]) | ((SampleRow.created_at == last[0]) & (SampleRow.id > last[1])))
            with Session(self._db.reader) as session:
                rows = [_sample(r, self.class_names) for r in session.scalars(query)]
            yield from rows
            if len(rows) < _CHUNK:
                return
            last = (rows[-1].created_at, rows[-1].id)

    def list(self, status: str | None = None, selection_id: str | None = None) -> list[Sample]:
        query = select(SampleRow).order_by(SampleRow.created_at, SampleRow.id)
        if status is not None:
            query = query.where(SampleRow.status == status)
        if selection_id is not None:
            query = query.where(SampleRow.selection_id == selection_id).order_by(None).order_by(SampleRow.score.desc())
        with Session(self._db.reader) as session:
            return [_sample(r, self.class_names) for r in session.scalars(query)]

    def not_selectable(self, shas: Iterable[str]) -> set[str]:
        """Those of ``shas`` already selected (sent to review) or corrected (a correction of any status)."""
        wanted, found = list(dict.fromkeys(shas)), set()
        with Session(self._db.reader) as session:
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                found |= set(session.scalars(select(SampleRow.image_sha256).where(SampleRow.image_sha256.in_(chunk), SampleRow.status == SELECTED)))
                found |= set(session.scalars(select(CorrectionRow.image_sha256).where(CorrectionRow.image_sha256.in_(chunk))))
        return found

    # Selecting ----------------------------------------------------------------------------------
    def record_selection(self, selection_id: str, picks: Sequence[SelectedImage], now: datetime | None = None) -> None:
        """Mark every pick ``selected`` in one transaction, or none: InvalidInput naming an image that another
        selection took (or a reviewer corrected) meanwhile, so no image is ever sent twice."""
        now = now or datetime.now(timezone.utc)
        try:
            with self._db.busy("record the selection"), Session(self._db.writer) as session, session.begin():
                taken = self._taken(session, [p.sha256 for p in picks])
                if taken:
                    raise InvalidInput(f"selection {selection_id}: {len(taken)} image(s) were selected or corrected meanwhile ({', '.join(sorted(taken)[:3])}...): select again")
                for p in picks:
                    fields = dict(status=SELECTED, selection_id=selection_id, selected_at=now, score=p.score, score_detail=json.dumps(p.detail))
                    if p.sample_id is not None:
                        changed = session.execute(update(SampleRow).where(SampleRow.id == p.sample_id, SampleRow.status == WAITING).values(**fields))
                        if changed.rowcount != 1:
                            raise InvalidInput(f"selection {selection_id}: sample {p.sample_id} is no longer waiting: select again")
                    else:
                        session.add(SampleRow(
                            id=uuid.uuid4().hex, image_sha256=p.sha256, image_path=str(p.path), original_name=p.name, source=p.source,
                            width=p.width, height=p.height, created_at=now, **fields,
                        ))
        except IntegrityError as exc:  # another selection recorded the same folder image first
            raise InvalidInput(f"selection {selection_id}: an image was selected by another selection meanwhile: select again") from exc

    def _taken(self, session: Session, shas: Sequence[str]) -> set[str]:
        selected = set(session.scalars(select(SampleRow.image_sha256).where(SampleRow.image_sha256.in_(shas), SampleRow.status == SELECTED)))
        return selected | set(session.scalars(select(CorrectionRow.image_sha256).where(CorrectionRow.image_sha256.in_(shas))))

    def release(self, selection_id: str, shas: Sequence[str]) -> None:
        """Put picks that never reached reviewers back: posted samples wait again, folder images are forgotten."""
        with self._db.busy("release picks"), Session(self._db.writer) as session, session.begin():
            rows = session.scalars(select(SampleRow).where(SampleRow.selection_id == selection_id, SampleRow.image_sha256.in_(list(shas))))
            for row in rows:
                if row.source == "intake":
                    row.status, row.selection_id, row.selected_at = WAITING, None, None
                else:
                    session.delete(row)

    def set_review_task(self, sha256: str, task: str) -> None:
        with self._db.busy("record a review task"), Session(self._db.writer) as session, session.begin():
            session.execute(update(SampleRow).where(SampleRow.image_sha256 == sha256).values(review_task=task))


def _unlink(dropped: list[tuple[str, str]]) -> None:
    for _, path in dropped:  # a blob is one image, and an image is in one row only
        Path(path).unlink(missing_ok=True)


def _meta(meta: str | None, max_bytes: int) -> str | None:
    if meta is None:
        return None
    if len(meta.encode()) > max_bytes:
        raise InvalidInput(f"meta: {len(meta.encode())} bytes, larger than {max_bytes} (YOLO_RETRAIN_SAMPLES_MAX_META_BYTES)")
    try:
        parsed = json.loads(meta)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"meta: not valid JSON ({exc})") from exc
    if not isinstance(parsed, dict):
        raise InvalidInput('meta: expected a JSON object, e.g. {"camera": "dock-3"}')
    return json.dumps(parsed)


def _sample(row: SampleRow, class_names: Sequence[str]) -> Sample:
    return Sample(
        row.id, row.image_sha256, Path(row.image_path), row.original_name, row.source, row.width, row.height,
        None if row.production_boxes is None else parse_boxes(row.production_boxes, class_names, f"sample {row.id} boxes"),
        row.production_model_version, None if row.meta is None else json.loads(row.meta), row.created_at, row.status,
        row.selection_id, row.score, None if row.score_detail is None else json.loads(row.score_detail), row.review_task,
    )
