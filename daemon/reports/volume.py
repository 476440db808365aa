"""Volume: tickets created, reopened and solved per period; created per category and channel.

Spam tickets are left out here (they are counted in the ``hygiene`` section). "Solved" counts
changes of status into solved or closed (from the event log), so a ticket solved, reopened and
solved again counts twice. The channel of a ticket is that of its first (inbound) message: ``smtp``,
``imap:<mailbox name>``, ``ingest`` or ``replay``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_, select
from sqlalchemy.engine import Connection

from postdesk.daemon.reports.periods import Window, iso
from postdesk.daemon.reports.sql import per_period
from postdesk.models.schema import Event, Message, Ticket

TICKETS = Ticket.__table__
EVENTS = Event.__table__
DONE = ("solved", "closed")


def compute(conn: Connection, window: Window) -> dict[str, Any]:
    """The volume figures of ``window``."""
    periods = window.periods()
    created = per_period(conn, periods, Ticket.created_at, TICKETS, not_spam())
    reopened = per_period(conn, periods, Event.at, EVENTS, Event.kind == "reopened")
    solved = per_period(conn, periods, Event.at, EVENTS, solved_event())
    by_category, by_channel = _created_by_category_and_channel(conn, window)
    return {
        "totals": {"created": sum(created), "reopened": sum(reopened), "solved": sum(solved)},
        "periods": [
            {"period": p.label, "start": iso(p.start), "created": c, "reopened": r, "solved": s}
            for p, c, r, s in zip(periods, created, reopened, solved, strict=True)
        ],
        "by_category": by_category,
        "by_channel": by_channel,
    }


def _created_by_category_and_channel(
    conn: Connection, window: Window
) -> tuple[dict[str, int], dict[str, int]]:
    """Tickets created in the window counted per category and per channel (NULL as ``""``),
    keys sorted.

    One grouped statement counts each (category, channel) pair; the few pairs are summed up
    here per dimension, rather than the tickets being materialised and grouped twice.
    """
    first_channel = (
        select(Message.channel)
        .where(Message.ticket_id == Ticket.id, Message.direction == "in")
        .order_by(Message.created_at)
        .limit(1)
        .scalar_subquery()
    )
    category = func.coalesce(Ticket.category, "").label("category")
    channel = func.coalesce(first_channel, "").label("channel")
    query = (
        select(category, channel, func.count())
        .where(Ticket.created_at >= window.start, Ticket.created_at < window.end, not_spam())
        .group_by(category, channel)
    )
    by_category: Counter[str] = Counter()
    by_channel: Counter[str] = Counter()
    for category_key, channel_key, n in conn.execute(query):
        by_category[str(category_key)] += int(n)
        by_channel[str(channel_key)] += int(n)
    return dict(sorted(by_category.items())), dict(sorted(by_channel.items()))


def not_spam() -> ColumnElement[bool]:
    """Tickets not marked as spam (unclassified ones included)."""
    return Ticket.spam.is_not(True)


def solved_event() -> ColumnElement[bool]:
    """Status events moving a ticket from an open state into solved or closed.

    The detail is the JSON ``{"from": ..., "to": ...}`` written by the ``#status`` command.
    """
    into = or_(*[Event.detail.like(f'%"to": "{s}"%') for s in DONE])
    out_of = or_(*[Event.detail.like(f'%"from": "{s}"%') for s in DONE])
    return and_(Event.kind == "status", into, not_(out_of))
