"""Corrections lifecycle: accepted / rejected / dropped, with why and by whom.

``status`` (a free string column) gains the values ``accepted``, ``rejected`` and ``dropped``; the columns
say why a row has its status (the gate's reason, or a person's action) and who reviewed it.

Rows of the release before (``applied``) are not sorted here: whether their version was promoted lives in
MLflow's registry, and a schema migration must not depend on a tracking server being reachable. The store
sorts them when it is opened with access to the registry (``CorrectionStore.sort_applied``); until then
they stay ``applied``, out of the pending count and out of datasets.

Revision ID: 0002_lifecycle
Revises: 0001_baseline
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_lifecycle"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("corrections", sa.Column("status_reason", sa.Text(), nullable=True))
    op.add_column("corrections", sa.Column("reviewed_by", sa.Text(), nullable=True))
    op.add_column("corrections", sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("corrections") as batch:  # SQLite drops columns by copying the table
        for column in ("reviewed_at", "reviewed_by", "status_reason"):
            batch.drop_column(column)
