"""A large message's raw bytes as a file in the blob store, named in messages.raw_sha256 (R-36)

Revision ID: 0011_raw_message_files
Revises: 0010_outbox_auto_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_raw_message_files"
down_revision = "0010_outbox_auto_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.add_column("messages", sa.Column("raw_sha256", sa.String(64), nullable=True))
    op.create_index("ix_messages_raw_sha256", "messages", ["raw_sha256"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_messages_raw_sha256", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("raw_sha256")
