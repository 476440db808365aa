"""plugin_events: the journal of plugin event hook calls, re-run after a crash (R-17)

Revision ID: 0013_plugin_events
Revises: 0012_message_read_at
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_plugin_events"
down_revision = "0012_message_read_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "plugin_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(32), nullable=False, unique=True),
        sa.Column("hook", sa.String(64), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_plugin_events_owner", "plugin_events", ["owner"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_plugin_events_owner", table_name="plugin_events")
    op.drop_table("plugin_events")
