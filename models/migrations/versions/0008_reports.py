"""reports: indexes for aggregating tickets, events and messages by time

Revision ID: 0008_reports
Revises: 0006_reliability
"""

from __future__ import annotations

from alembic import op

revision = "0008_reports"
down_revision = "0006_reliability"
branch_labels = None
depends_on = None

MESSAGE_COLUMNS = ["ticket_id", "direction", "created_at", "auto", "internal", "author", "channel"]


def upgrade() -> None:
    """Apply this revision."""
    op.create_index("ix_tickets_created_at", "tickets", ["created_at"])
    op.create_index("ix_tickets_solved_at", "tickets", ["solved_at"])
    op.create_index("ix_events_kind_at", "events", ["kind", "at"])
    op.create_index("ix_messages_report", "messages", MESSAGE_COLUMNS)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_messages_report", table_name="messages")
    op.drop_index("ix_events_kind_at", table_name="events")
    op.drop_index("ix_tickets_solved_at", table_name="tickets")
    op.drop_index("ix_tickets_created_at", table_name="tickets")
