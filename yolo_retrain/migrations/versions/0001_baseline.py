"""Baseline: the correction store as the release before versioned schemas created it (corrections, flags).

A store made by that release has exactly these tables and indexes; it is stamped with this revision, not
re-created.

Revision ID: 0001_baseline
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "corrections",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("image_path", sa.Text(), nullable=False),
        sa.Column("original_name", sa.Text(), nullable=False),
        sa.Column("label_text", sa.Text(), nullable=False),
        sa.Column("num_boxes", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("source_model_version", sa.Text(), nullable=True),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("applied_version", sa.Text(), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
    )
    for column in ("image_sha256", "created_at", "status", "batch_id"):
        op.create_index(f"ix_corrections_{column}", "corrections", [column])
    op.create_table(
        "flags",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("flags")
    op.drop_table("corrections")
