"""ticket numbers from a PostgreSQL sequence, so that worker processes do not queue on one row

Revision ID: 0009_ticket_sequence
Revises: 0008_reports

On PostgreSQL the ``ticket_numbers`` sequence replaces the ``ticket_number`` counter row, which
every new ticket locked until its batch committed. It starts after the highest number handed
out so far. SQLite keeps the counter row (one writer at a time there anyway).
"""

from __future__ import annotations

from alembic import op

revision = "0009_ticket_sequence"
down_revision = "0008_reports"
branch_labels = None
depends_on = None

SEQUENCE = "ticket_numbers"  # postdesk.daemon.store.db.TICKET_SEQUENCE


def upgrade() -> None:
    """Apply this revision."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE} AS bigint MINVALUE 1")
    op.execute(
        f"SELECT setval('{SEQUENCE}', 1 + GREATEST("
        " COALESCE((SELECT max(number) FROM tickets), 0),"
        " COALESCE((SELECT value FROM counters WHERE name = 'ticket_number'), 0)), false)"
    )


def downgrade() -> None:
    """Revert this revision: the counter row continues where the sequence stopped."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "INSERT INTO counters (name, value) VALUES ('ticket_number', 0) ON CONFLICT DO NOTHING"
    )
    op.execute(
        "UPDATE counters SET value = GREATEST(value, COALESCE((SELECT max(number) FROM tickets), 0))"
        " WHERE name = 'ticket_number'"
    )
    op.execute(f"DROP SEQUENCE IF EXISTS {SEQUENCE}")
