"""reliability: the daemon that claimed an outbox row

Revision ID: 0006_reliability
Revises: 0005_sla
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_reliability"
down_revision = "0005_sla"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=255), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_by")
