"""Withdrawn corrections: when the source of a correction (a reviewer's Label Studio annotation) was deleted.

A correction whose annotation is deleted before a model learned it is ``withdrawn`` (a status: a free string, no
schema change); one a model already learned stays ``accepted`` and is listed for a person's review. Both keep the
time here. (Two writers at once are kept apart by per-image advisory locks on PostgreSQL, not by a constraint:
see ``yolo_retrain/store/image_locks.py``.)

Revision ID: 0005_store_constraints
Revises: 0004_project_classes
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_store_constraints"
down_revision = "0004_project_classes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("corrections", sa.Column("source_deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("corrections") as batch:  # SQLite drops columns by copying the table
        batch.drop_column("source_deleted_at")
