"""PostgreSQL compresses the columns that hold mail with lz4 instead of pglz

Revision ID: 0015_lz4_compression
Revises: 0014_outbox_raw_once

PostgreSQL compresses a value of more than about 2 kB before it stores it, with pglz unless a
column says otherwise. A new ticket stores some 28 kB of such values (the customer's raw
message and text, the three mails written for it), and pglz compressing them was a fifth of
the database server's CPU per message: lz4 (PostgreSQL 14 and later, when built with it, as
the distributions build it) takes 0.4 ms less per message (bench_pipeline.py --in-process:
the backend's CPU 2.25 -> 1.87 ms, medians of five alternated runs), which several workers on
two cores share. Values already
stored keep their compression; SQLite is not concerned.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0015_lz4_compression"
down_revision = "0014_outbox_raw_once"
branch_labels = None
depends_on = None

COLUMNS = (  # table, column: the raw mail, its text, and the documents made of it
    ("messages", "raw"),
    ("messages", "text"),
    ("messages", "new_text"),
    ("outbox", "raw"),
    ("quarantine", "raw"),
    ("plugin_events", "arguments"),
    ("webhook_deliveries", "body"),
)


def upgrade() -> None:
    """Apply this revision."""
    if _lz4_available():
        _compress_with("lz4")


def downgrade() -> None:
    """Revert this revision: the server's default method again."""
    if _lz4_available():
        _compress_with("default")


def _lz4_available() -> bool:
    """Whether the database is a PostgreSQL that can compress with lz4."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    offered = bind.execute(
        text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    return "lz4" in (offered or [])


def _compress_with(method: str) -> None:
    """Set every column of COLUMNS to compress with ``method``."""
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")
