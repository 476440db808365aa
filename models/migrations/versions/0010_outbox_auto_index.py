"""An index for the hourly cap on automatic mail to all outside addresses (R-43)

Revision ID: 0010_outbox_auto_index
Revises: 0009_ticket_sequence
"""

from __future__ import annotations

from alembic import op

revision = "0010_outbox_auto_index"
down_revision = "0009_ticket_sequence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_index("ix_outbox_auto_created", "outbox", ["auto", "created_at"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_outbox_auto_created", table_name="outbox")
