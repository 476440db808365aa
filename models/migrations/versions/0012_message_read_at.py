"""When a recipient's read receipt (MDN) said our mail was displayed (R-38)

Revision ID: 0012_message_read_at
Revises: 0011_raw_message_files
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_message_read_at"
down_revision = "0011_raw_message_files"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("read_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("read_at")
