"""Satisfaction: the CSAT ratings given in the window, their spread, averages and response rate.

A ticket counts once, with its current rating, when a rating was recorded for it in the window.
The response rate is the share of the tickets sent a CSAT request in the window that have a
rating now. Averages are per assignee and per category.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CTE, ColumnElement, func, select
from sqlalchemy.engine import Connection

from postdesk.daemon.reports.periods import Window
from postdesk.models.schema import Event, OutboxItem, Ticket

SCORES = (1, 2, 3, 4, 5)


def compute(conn: Connection, window: Window) -> dict[str, Any]:
    """The satisfaction figures of ``window``."""
    rated = _rated(window)
    spread = dict.fromkeys(SCORES, 0)
    for score, n in conn.execute(select(rated.c.rating, func.count()).group_by(rated.c.rating)):
        spread[int(score)] = int(n)
    asked = select(OutboxItem.ticket_id).where(
        OutboxItem.kind == "csat_request",
        OutboxItem.created_at >= window.start,
        OutboxItem.created_at < window.end,
    )
    requested, answered = conn.execute(
        select(func.count(), func.count(Ticket.rating)).where(Ticket.id.in_(asked))
    ).one()
    total = sum(spread.values())
    overall = conn.execute(select(func.avg(rated.c.rating))).scalar_one()
    return {
        "rated": total,
        "requested": int(requested),
        "answered": int(answered),
        "response_rate": round(answered / requested, 3) if requested else None,
        "average": _round(overall),
        "distribution": [{"score": s, "count": spread[s]} for s in SCORES],
        "by_agent": _averages(conn, rated.c.agent, rated),
        "by_category": _averages(conn, rated.c.category, rated),
    }


def _rated(window: Window) -> CTE:
    """Tickets rated in the window: assignee, category, rating."""
    rated_ids = select(Event.ticket_id).where(
        Event.kind == "rated", Event.at >= window.start, Event.at < window.end
    )
    return (
        select(
            Ticket.assignee.label("agent"),
            Ticket.category.label("category"),
            Ticket.rating.label("rating"),
        )
        .where(Ticket.rating.is_not(None), Ticket.id.in_(rated_ids))
        .cte("rated")
    )


def _averages(conn: Connection, key: ColumnElement[Any], rated: CTE) -> list[dict[str, Any]]:
    label = func.coalesce(key, "").label("key")
    query = select(label, func.count(), func.avg(rated.c.rating)).group_by(label).order_by(label)
    return [
        {"key": str(k), "count": int(n), "average": _round(avg)}
        for k, n, avg in conn.execute(query)
    ]


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)
