"""A ticket's SLA as plain data: the ``sla`` object of ``ticket --json`` and its state now.

The due times are kept current by ``postdesk.daemon.sla.clock`` whenever the ticket changes;
the state only compares them with the time, so reading needs no calendar.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from postdesk.models.schema import Ticket
from postdesk.models.sla import TicketSla

STATES = ("ok", "warning", "breached", "met", "paused")
STOPPED = ("solved", "closed")  # base states in which the clocks no longer run


def aware(moment: datetime | None) -> datetime | None:
    """``moment`` as aware UTC (SQLite hands back naive datetimes; every stored time is UTC)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def sla_state(row: TicketSla | None, status: str, now: datetime) -> str:
    """``ok``, ``warning``, ``breached``, ``met`` or ``paused`` for a ticket in base ``status``."""
    if row is None or row.policy is None:
        return "ok"
    stored = (
        (row.first_response_due, row.first_response_warn_at, row.first_response_met_at),
        (row.resolution_due, row.resolution_warn_at, row.resolved_at),
    )
    targets = [(aware(due), aware(warn), aware(met)) for due, warn, met in stored]
    for due, _warn, met in targets:
        if due is not None and (met > due if met is not None else now >= due):
            return "breached"
    if status in STOPPED or all(met is not None for _due, _warn, met in targets):
        return "met"
    if status == "pending":
        return "paused"
    if any(met is None and warn is not None and now >= warn for _due, warn, met in targets):
        return "warning"
    return "ok"


def sla_dict(session: Session, ticket: Ticket, now: datetime | None = None) -> dict[str, Any]:
    """The ``sla`` object of ``ticket --json`` (all None but the state when no policy applies)."""
    row = session.get(TicketSla, ticket.id)

    def stamp(moment: datetime | None) -> str | None:
        value = aware(moment)
        return value.isoformat() if value is not None else None

    return {
        "policy": row.policy if row else None,
        "first_response_due": stamp(row.first_response_due) if row else None,
        "resolution_due": stamp(row.resolution_due) if row else None,
        "first_response_met_at": stamp(row.first_response_met_at) if row else None,
        "resolution_met_at": stamp(row.resolved_at) if row else None,
        "state": sla_state(row, ticket.status, now or datetime.now(UTC)),
    }


def due_line(session: Session, ticket: Ticket) -> str:
    """The next unmet due time in the calendar's timezone, e.g. "first response by
    2026-11-30 12:00 MSK (Europe/Moscow)"; "" when nothing is due."""
    return due_text(session.get(TicketSla, ticket.id), ticket)


def due_text(row: TicketSla | None, ticket: Ticket) -> str:
    """:func:`due_line` for the SLA ``row`` of ``ticket`` in hand."""
    if row is None or row.policy is None or ticket.status in STOPPED:
        return ""
    pending = [
        (due, label)
        for due, met, label in (
            (aware(row.first_response_due), row.first_response_met_at, "first response"),
            (aware(row.resolution_due), row.resolved_at, "resolution"),
        )
        if due is not None and met is None
    ]
    if not pending:
        return "resolution clock paused" if ticket.status == "pending" else ""
    due, label = min(pending)
    local = due.astimezone(ZoneInfo(row.timezone))
    return (
        f"{label} by {local:%Y-%m-%d %H:%M} {local.tzname()} ({row.timezone}), policy {row.policy}"
    )
