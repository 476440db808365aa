"""The SLA tables: each ticket's due times and clock, and the alerts already sent.

Registered on ``Base`` by the import at the end of ``models/schema.py``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from postdesk.models.schema import Base, utcnow


class TicketSla(Base):
    """A ticket's policy and due times, kept up to date as the ticket changes.

    ``*_warn_at`` and ``*_due`` are None when there is no target or its clock is stopped;
    ``resolution_paused`` lists the (start, end) ISO pairs during which the resolution clock
    stood still (pending, or solved and then reopened); ``stopped_since`` is when it last
    stopped, None while it runs.
    """

    __tablename__ = "ticket_sla"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    policy: Mapped[str | None] = mapped_column(String(64))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    first_response_due: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_response_warn_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), index=True
    )
    first_response_met_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_due: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_warn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stopped_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_paused: Mapped[str] = mapped_column(Text, default="[]")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SlaAlert(Base):
    """One warning or breach alert; the unique key makes each go out once, whoever sends it."""

    __tablename__ = "sla_alerts"
    __table_args__ = (UniqueConstraint("ticket_id", "target", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    target: Mapped[str] = mapped_column(String(16))  # first_response | resolution
    kind: Mapped[str] = mapped_column(String(16))  # warning | breached
    due: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
