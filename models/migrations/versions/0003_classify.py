"""classify: spam and category scores on tickets, labels agents teach

Revision ID: 0003_classify
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_classify"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("spam_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("category_score", sa.Float(), nullable=True))
    op.create_table(
        "classify_labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("message_pk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.ForeignKeyConstraint(["message_pk"], ["messages.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_classify_labels_ticket_id", "classify_labels", ["ticket_id"])
    op.create_index("ix_classify_labels_message_pk", "classify_labels", ["message_pk"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_classify_labels_message_pk", table_name="classify_labels")
    op.drop_index("ix_classify_labels_ticket_id", table_name="classify_labels")
    op.drop_table("classify_labels")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("category_score")
        batch.drop_column("spam_score")
