"""Project classes: the class names the stored labels' ids mean, recorded with the store.

Corrections keep their labels as class ids of the project's classes when they were stored. If the base
data.yaml's ``names`` were later reordered or renamed, every stored id would silently mean another class; the
store records the names once (on its first open at this revision) and refuses other names on later opens
(``CorrectionStore`` checks; classes appended at the end are accepted, the ids already stored keep their meaning).

Revision ID: 0004_project_classes
Revises: 0003_correction_diffs
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_project_classes"
down_revision = "0003_correction_diffs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_classes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("names", sa.Text(), nullable=False),  # JSON list, in id order
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("project_classes")
