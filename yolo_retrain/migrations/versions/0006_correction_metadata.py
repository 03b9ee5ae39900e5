"""Image metadata with each correction (camera, site...: JSON names to strings), the gate's slices (#23).

Rows stored before it have none: their images are in a slice only through the base data's sidecar.

Revision ID: 0006_correction_metadata
Revises: 0005_store_constraints
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_correction_metadata"
down_revision = "0005_store_constraints"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("corrections", sa.Column("image_metadata", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("corrections") as batch:  # SQLite drops columns by copying the table
        batch.drop_column("image_metadata")
