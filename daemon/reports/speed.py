"""Speed: first response time and resolution time in wall time (seconds: median, p90, mean).

- First response: from a ticket's creation to the first public reply of an agent (an outgoing
  message that is neither automatic nor internal), for tickets created in the window. The
  agent is the author of the last inbound message before that reply: the agent's own mail it
  was relayed from.
- Resolution: from creation to ``solved_at`` (the last time it was solved or closed), for
  tickets solved in the window and still solved or closed; the agent is the assignee.
Spam and merged tickets are left out. The same figures in business time are in
:mod:`postdesk.daemon.reports.business` (they need the SLA calendars).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import false, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased
from sqlalchemy.sql.expression import ScalarSelect, Select

from postdesk.daemon.reports.durations import durations
from postdesk.daemon.reports.periods import Window
from postdesk.daemon.reports.sql import Expression, materialized, seconds_between
from postdesk.daemon.reports.volume import DONE, not_spam
from postdesk.models.schema import Message, Ticket

DIMENSIONS = ("agent", "category")


def compute(conn: Connection, window: Window) -> dict[str, Any]:
    """The speed figures of ``window``."""
    first = durations(conn, _first_responses(window), DIMENSIONS)
    first["unanswered"] = first.pop("missing")
    resolution = durations(conn, _resolutions(window), DIMENSIONS)
    del resolution["missing"]
    return {"first_response": first, "resolution": resolution}


def _first_responses(window: Window) -> Select[*tuple[Any, ...]]:
    """Tickets created in the window: replying agent, category, seconds to the reply (or NULL)."""
    reply = aliased(Message)
    replied_at = (
        select(func.min(reply.created_at))
        .where(
            reply.ticket_id == Ticket.id,
            reply.direction == "out",
            reply.auto == false(),
            reply.internal == false(),
        )
        .scalar_subquery()
    )
    base = materialized(
        select(
            Ticket.id.label("ticket_id"),
            Ticket.created_at.label("created_at"),
            Ticket.category.label("category"),
            replied_at.label("replied_at"),
        ).where(
            Ticket.created_at >= window.start,
            Ticket.created_at < window.end,
            Ticket.merged_into.is_(None),
            not_spam(),
        ),
        "first_base",
    )
    return select(
        seconds_between(base.c.replied_at, base.c.created_at),
        func.coalesce(replying_agent(base.c.ticket_id, base.c.replied_at), ""),
        func.coalesce(base.c.category, ""),
    )


def replying_agent(ticket_id: Expression, replied_at: Expression) -> ScalarSelect[Any]:
    """The agent a reply at ``replied_at`` was relayed from: the author of the ticket's last
    inbound message until then (NULL when there is no reply)."""
    source = aliased(Message)
    return (
        select(source.author)
        .where(
            source.ticket_id == ticket_id,
            source.direction == "in",
            source.created_at <= replied_at,
        )
        .order_by(source.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )


def _resolutions(window: Window) -> Select[*tuple[Any, ...]]:
    """Tickets solved in the window: assignee, category, seconds from creation to solve."""
    return select(
        seconds_between(Ticket.solved_at, Ticket.created_at),
        func.coalesce(Ticket.assignee, ""),
        func.coalesce(Ticket.category, ""),
    ).where(
        Ticket.solved_at >= window.start,
        Ticket.solved_at < window.end,
        Ticket.status.in_(DONE),
        Ticket.merged_into.is_(None),
        not_spam(),
    )
