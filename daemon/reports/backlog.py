"""Backlog: tickets open at the end of the window, by age and by assignee.

Open at the end means created before it, not spam, not merged, and either still new, open or
pending now, or solved only after the end. The assignee is the current one. Age is counted from
creation to the end of the window.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CTE, DateTime, case, literal, or_, select
from sqlalchemy.engine import Connection

from postdesk.daemon.reports.periods import Window
from postdesk.daemon.reports.sql import grouped, materialized, seconds_between
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
    counts = grouped(conn, _open_at_end(window), ("bucket", "assignee"))
    by_age = [counts["bucket"].get(str(i), (0, None))[0] for i in range(len(AGE_BUCKETS))]
    return {
        "open": sum(by_age),
        "by_age": [
            {"bucket": label, "count": n} for (label, _), n in zip(AGE_BUCKETS, by_age, strict=True)
        ],
        "by_assignee": {k: n for k, (n, _) in counts["assignee"].items()},
    }


def _open_at_end(window: Window) -> CTE:
    """Tickets open at the end of the window: assignee and age bucket (index into AGE_BUCKETS)."""
    end = window.end
    age_days = seconds_between(literal(end, DateTime(timezone=True)), Ticket.created_at) / 86400.0
    bucket = case(
        *[(age_days < bound, index) for index, (_, bound) in enumerate(AGE_BUCKETS[:-1])],
        else_=len(AGE_BUCKETS) - 1,
    )
    return materialized(
        select(Ticket.assignee.label("assignee"), bucket.label("bucket")).where(
            Ticket.created_at < end,
            Ticket.merged_into.is_(None),
            not_spam(),
            or_(Ticket.status.in_(OPEN), Ticket.solved_at >= end),
        ),
        "backlog",
    )
