"""Outgoing mail kept once: an outbox row names the ticket's outgoing message holding its bytes

A ticket's mail was stored twice, in ``outbox.raw`` and in its outgoing ``messages`` row; new
rows name that message in ``outbox.message_pk`` and leave ``outbox.raw`` empty. Rows queued
before keep their bytes in ``outbox.raw`` (``message_pk`` NULL) and are sent as they are.

Revision ID: 0014_outbox_raw_once
Revises: 0013_plugin_events
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_outbox_raw_once"
down_revision = "0013_plugin_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("message_pk", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_outbox_message_pk", "messages", ["message_pk"], ["id"])


def downgrade() -> None:
    """Revert this revision: the bytes go back into the outbox rows that named a message."""
    op.execute(
        "UPDATE outbox SET raw = (SELECT messages.raw FROM messages"
        " WHERE messages.id = outbox.message_pk) WHERE message_pk IS NOT NULL"
    )
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("fk_outbox_message_pk", type_="foreignkey")
        batch.drop_column("message_pk")
