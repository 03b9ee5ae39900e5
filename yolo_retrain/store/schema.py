"""The store's tables (the ORM model the Alembic revisions in ``yolo_retrain/migrations`` must match), its statuses,
and UTC datetimes on every backend."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal, get_args

from sqlalchemy import DateTime, Float, ForeignKey, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

Status = Literal["pending", "claimed", "accepted", "rejected", "suspicious", "superseded", "dropped", "withdrawn"]
STATUSES: tuple[Status, ...] = get_args(Status)
LEGACY_APPLIED = "applied"  # rows of a store from before the lifecycle, until legacy.sort_applied sorts them


class UTCDateTime(TypeDecorator[datetime]):
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


class Base(DeclarativeBase):
    pass


class CorrectionRow(Base):
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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), index=True)
    applied_version: Mapped[str | None] = mapped_column(Text)  # the version it was trained into (accepted/rejected)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_reason: Mapped[str | None] = mapped_column(Text)  # the gate's reason, or what a person did
    reviewed_by: Mapped[str | None] = mapped_column(Text)  # who requeued, accepted or dropped it
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # its annotation was deleted (withdrawal)
    image_metadata: Mapped[str | None] = mapped_column(Text)  # JSON {name: value} (camera, site...): the gate's slices


class FlagRow(Base):
    """Small named switches kept with the corrections (e.g. whether the next threshold crossing is announced)."""

    __tablename__ = "flags"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bool]


class ProjectClassesRow(Base):
    """The class names the stored labels' ids mean (one row), recorded on the store's first open."""

    __tablename__ = "project_classes"

    id: Mapped[int] = mapped_column(primary_key=True)
    names: Mapped[str] = mapped_column(Text)  # JSON list, in id order
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DiffRow(Base):
    """The prediction a correction corrects and the reviewer's changes to it (Label Studio corrections, #13)."""

    __tablename__ = "correction_diffs"

    correction_id: Mapped[str] = mapped_column(String(32), ForeignKey("corrections.id"), primary_key=True)
    source_key: Mapped[str | None] = mapped_column(String(255), index=True)  # e.g. the Label Studio annotation
    source_digest: Mapped[str | None] = mapped_column(String(64))  # the delivered content: a redelivery matches it
    predicted_version: Mapped[str | None] = mapped_column(Text)
    prediction_source: Mapped[str] = mapped_column(Text)
    predicted_labels: Mapped[str] = mapped_column(Text)  # YOLO label text of the model's boxes
    diff: Mapped[str] = mapped_column(Text)  # JSON: labelstudio.diff.BoxDiff.to_json()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SampleRow(Base):
    """An unlabelled image in the review pool (#22): posted by an inference service, or picked from a folder.

    Kept beside the corrections (one database) so that a selection can leave out images already corrected; read and
    written by ``yolo_retrain.selection.samples`` only. One row per image (by content).
    """

    __tablename__ = "samples"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    image_sha256: Mapped[str] = mapped_column(String(64), index=True, unique=True)
    image_path: Mapped[str] = mapped_column(Text)  # the stored blob (intake) or the file it was read from (folder)
    original_name: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # intake | folder
    width: Mapped[int]
    height: Mapped[int]
    production_boxes: Mapped[str | None] = mapped_column(Text)  # JSON: the production model's boxes, by class name
    production_model_version: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[str | None] = mapped_column(Text)  # JSON: camera, site ... as posted
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # waiting | selected
    selection_id: Mapped[str | None] = mapped_column(String(32), index=True)
    selected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    score: Mapped[float | None] = mapped_column(Float)
    score_detail: Mapped[str | None] = mapped_column(Text)  # JSON: the signals behind the score, why it was picked
    review_task: Mapped[str | None] = mapped_column(Text)  # where it was sent, e.g. a Label Studio task URL
