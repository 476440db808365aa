"""sla: each ticket's due times and clock, the alerts sent once, the status label

Revision ID: 0005_sla
Revises: 0004_plugins
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_sla"
down_revision = "0004_plugins"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("status_label", sa.String(length=64), nullable=True))
    op.create_table(
        "ticket_sla",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("first_response_due", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_warn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_met_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_due", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_warn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_paused", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("ticket_id"),
    )
    op.create_index(
        "ix_ticket_sla_first_response_warn_at", "ticket_sla", ["first_response_warn_at"]
    )
    op.create_index("ix_ticket_sla_resolution_warn_at", "ticket_sla", ["resolution_warn_at"])
    op.create_table(
        "sla_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("due", sa.DateTime(timezone=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id", "target", "kind"),
    )
    op.create_index("ix_sla_alerts_ticket_id", "sla_alerts", ["ticket_id"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("sla_alerts")
    op.drop_table("ticket_sla")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("status_label")
