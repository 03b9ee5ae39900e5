"""The review pool (#22): unlabelled images a selection may send to reviewers, and which it already sent.

Revision ID: 0007_samples
Revises: 0006_correction_metadata
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_samples"
down_revision = "0006_correction_metadata"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "samples",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("image_path", sa.Text(), nullable=False),
        sa.Column("original_name", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("production_boxes", sa.Text(), nullable=True),
        sa.Column("production_model_version", sa.Text(), nullable=True),
        sa.Column("meta", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("selection_id", sa.String(32), nullable=True),
        sa.Column("selected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("score_detail", sa.Text(), nullable=True),
        sa.Column("review_task", sa.Text(), nullable=True),
    )
    op.create_index("ix_samples_image_sha256", "samples", ["image_sha256"], unique=True)
    op.create_index("ix_samples_created_at", "samples", ["created_at"])
    op.create_index("ix_samples_status", "samples", ["status"])
    op.create_index("ix_samples_selection_id", "samples", ["selection_id"])


def downgrade() -> None:
    op.drop_table("samples")
