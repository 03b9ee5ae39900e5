"""Correction diffs: for a correction made against a model's prediction (Label Studio), that prediction and
what the reviewer changed (per class: added, removed, relabelled, moved, kept).

``source_key`` names where the correction came from (``label-studio project P task T annotation A``) and
``source_digest`` the exact content delivered, so a redelivered annotation is recognised and stored once.

Revision ID: 0003_correction_diffs
Revises: 0002_lifecycle
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_correction_diffs"
down_revision = "0002_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "correction_diffs",
        sa.Column("correction_id", sa.String(32), sa.ForeignKey("corrections.id"), primary_key=True),
        sa.Column("source_key", sa.String(255), nullable=True),
        sa.Column("source_digest", sa.String(64), nullable=True),
        sa.Column("predicted_version", sa.Text(), nullable=True),
        sa.Column("prediction_source", sa.Text(), nullable=False),
        sa.Column("predicted_labels", sa.Text(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_correction_diffs_source_key", "correction_diffs", ["source_key"])


def downgrade() -> None:
    op.drop_index("ix_correction_diffs_source_key", table_name="correction_diffs")
    op.drop_table("correction_diffs")
