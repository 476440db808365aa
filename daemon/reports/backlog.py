"""Backlog: tickets open at the end of the window, by age and by assignee.

Open at the end means created before it, not spam, not merged, and either still new, open or
pending now, or solved only after the end. The assignee is the current one. Age is counted from
creation to the end of the window.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CTE, DateTime, case, func, literal, or_, select
from sqlalchemy.engine import Connection

from postdesk.daemon.reports.periods import Window
from postdesk.daemon.reports.sql import grouped_counts, seconds_between
from postdesk.daemon.reports.volume import not_spam
from postdesk.models.schema import Ticket

OPEN = ("new", "open", "pending")
# Upper bounds (days, exclusive) of the age buckets; the last is open-ended.
AGE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 1d", 1.0),
    ("1-3d", 3.0),
    ("3-7d", 7.0),
    ("7-30d", 30.0),
    (">= 30d", float("inf")),
)


def compute(conn: Connection, window: Window) -> dict[str, Any]:
    """The backlog at the end of ``window``."""
    backlog = _open_at_end(window)
    age = case(
        *[(backlog.c.age_days < bound, index) for index, (_, bound) in enumerate(AGE_BUCKETS[:-1])],
        else_=len(AGE_BUCKETS) - 1,
    ).label("bucket")
    counts = [0] * len(AGE_BUCKETS)
    for index, n in conn.execute(select(age, func.count()).group_by(age)):
        counts[int(index)] = int(n)
    return {
        "open": sum(counts),
        "by_age": [
            {"bucket": label, "count": n} for (label, _), n in zip(AGE_BUCKETS, counts, strict=True)
        ],
        "by_assignee": grouped_counts(conn, backlog.c.assignee, backlog),
    }


def _open_at_end(window: Window) -> CTE:
    end = window.end
    return (
        select(
            Ticket.assignee.label("assignee"),
            (
                seconds_between(literal(end, DateTime(timezone=True)), Ticket.created_at) / 86400.0
            ).label("age_days"),
        )
        .where(
            Ticket.created_at < end,
            Ticket.merged_into.is_(None),
            not_spam(),
            or_(Ticket.status.in_(OPEN), Ticket.solved_at >= end),
        )
        .cte("backlog")
    )
