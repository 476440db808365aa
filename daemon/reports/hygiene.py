"""Spam and quarantine: what was kept away from the agents in the window.

- ``spam_tickets``: tickets created in the window that are marked as spam now;
- ``marked_spam``: ``#spam`` commands given in the window;
- ``quarantined``: messages quarantined in the window, by their state now (held or replayed);
- ``held_now``: every message waiting in quarantine at the time of the report.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from postdesk.daemon.reports.periods import Window
from postdesk.daemon.reports.sql import grouped_counts
from postdesk.models.schema import Event, QuarantineItem, Ticket


def compute(conn: Connection, window: Window) -> dict[str, Any]:
    """The spam and quarantine counts of ``window``."""
    spam_tickets = conn.execute(
        select(func.count()).where(
            Ticket.spam.is_(True),
            Ticket.created_at >= window.start,
            Ticket.created_at < window.end,
        )
    ).scalar_one()
    marked = conn.execute(
        select(func.count()).where(
            Event.kind == "spam", Event.at >= window.start, Event.at < window.end
        )
    ).scalar_one()
    quarantined = grouped_counts(
        conn,
        QuarantineItem.status,
        QuarantineItem.__table__,
        QuarantineItem.created_at >= window.start,
        QuarantineItem.created_at < window.end,
    )
    held_now = conn.execute(
        select(func.count()).where(QuarantineItem.status == "held")
    ).scalar_one()
    return {
        "spam_tickets": int(spam_tickets),
        "marked_spam": int(marked),
        "quarantined": sum(quarantined.values()),
        "quarantined_by_state": quarantined,
        "held_now": int(held_now),
    }
