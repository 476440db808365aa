"""Satisfaction: the CSAT ratings given in the window, their spread, averages and response rate.

A ticket counts once, with its current rating, when a rating was recorded for it in the window.
The response rate is the share of the tickets sent a CSAT request in the window that have a
rating now. Averages are per assignee and per category.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CTE, func, literal, select
from sqlalchemy.engine import Connection

from postdesk.daemon.reports.periods import Window
from postdesk.daemon.reports.sql import grouped, materialized
from postdesk.models.schema import Event, OutboxItem, Ticket

SCORES = (1, 2, 3, 4, 5)


def compute(conn: Connection, window: Window) -> dict[str, Any]:
    """The satisfaction figures of ``window``."""
    found = grouped(conn, _rated(window), ("total", "rating", "agent", "category"), "rating")
    asked = select(OutboxItem.ticket_id).where(
        OutboxItem.kind == "csat_request",
        OutboxItem.created_at >= window.start,
        OutboxItem.created_at < window.end,
    )
    requested, answered = conn.execute(
        select(func.count(), func.count(Ticket.rating)).where(Ticket.id.in_(asked))
    ).one()
    total, overall = found["total"].get("", (0, None))
    return {
        "rated": total,
        "requested": int(requested),
        "answered": int(answered),
        "response_rate": round(answered / requested, 3) if requested else None,
        "average": _round(overall),
        "distribution": [
            {"score": s, "count": found["rating"].get(str(s), (0, None))[0]} for s in SCORES
        ],
        "by_agent": _averages(found["agent"]),
        "by_category": _averages(found["category"]),
    }


def _rated(window: Window) -> CTE:
    """Tickets rated in the window: assignee, category, rating (and a constant for the total)."""
    rated_ids = select(Event.ticket_id).where(
        Event.kind == "rated", Event.at >= window.start, Event.at < window.end
    )
    return materialized(
        select(
            literal("").label("total"),
            Ticket.assignee.label("agent"),
            Ticket.category.label("category"),
            Ticket.rating.label("rating"),
        ).where(Ticket.rating.is_not(None), Ticket.id.in_(rated_ids)),
        "rated",
    )


def _averages(groups: dict[str, tuple[int, float | None]]) -> list[dict[str, Any]]:
    return [{"key": k, "count": n, "average": _round(avg)} for k, (n, avg) in groups.items()]


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)
