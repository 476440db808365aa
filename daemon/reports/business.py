"""First response and resolution in business time: counted in each policy's SLA calendar.

- First response: creation to ``first_response_met_at``, for tickets created in the window.
- Resolution: creation to ``resolved_at`` less the time the clock stood still
  (``resolution_paused``: pending, or solved before a reopen), for tickets resolved in the window.

One SQL statement reads the per-ticket times. The pauses are stored as JSON text, so the working
time is counted here, but without walking the calendar per ticket: each calendar's open intervals
over the span of the data are laid out once with running totals, and the working time up to any
instant is one binary search (:class:`WorkingClock`). Figures: count, mean, nearest-rank median
and p90 in seconds, overall and per policy; tickets whose policy no longer exists are left out.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.engine import Connection

from postdesk.daemon.config import Settings
from postdesk.daemon.reports.periods import Window
from postdesk.daemon.reports.volume import not_spam
from postdesk.daemon.sla.calendar import Calendar
from postdesk.daemon.sla.rules import build_rules
from postdesk.daemon.store.slaview import aware
from postdesk.models.schema import Ticket
from postdesk.models.sla import TicketSla


def policy_calendars(settings: Settings) -> dict[str, Calendar]:
    """Each configured SLA policy's calendar, by policy name."""
    return {policy.name: policy.calendar for policy in build_rules(settings).policies}


class WorkingClock:
    """Working seconds of one calendar between instants in [low, high], by running totals."""

    def __init__(self, calendar: Calendar, low: datetime, high: datetime) -> None:
        """Lay out the calendar's open intervals from ``low`` to ``high``."""
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.before: list[float] = []  # working seconds before each interval starts
        total = 0.0
        for start, end in calendar.open_intervals(low, high):
            self.starts.append(start.timestamp())
            self.ends.append(end.timestamp())
            self.before.append(total)
            total += end.timestamp() - start.timestamp()

    def upto(self, instant: datetime) -> float:
        """Working seconds from ``low`` to ``instant``."""
        moment = instant.timestamp()
        index = bisect_right(self.starts, moment) - 1
        if index < 0:
            return 0.0
        return self.before[index] + min(moment, self.ends[index]) - self.starts[index]

    def between(self, start: datetime, end: datetime) -> float:
        """Working seconds from ``start`` to ``end`` (zero when ``end`` is not later)."""
        return max(0.0, self.upto(end) - self.upto(start))


def compute(conn: Connection, window: Window, calendars: Mapping[str, Calendar]) -> dict[str, Any]:
    """The business-time figures of ``window`` for the policies in ``calendars``."""
    rows = conn.execute(
        select(
            TicketSla.policy,
            Ticket.created_at,
            TicketSla.first_response_met_at,
            TicketSla.resolved_at,
            TicketSla.resolution_paused,
        )
        .join(Ticket, Ticket.id == TicketSla.ticket_id)
        .where(
            TicketSla.policy.in_(list(calendars)),
            Ticket.merged_into.is_(None),
            not_spam(),
            or_(
                Ticket.created_at.between(window.start, window.end),
                TicketSla.resolved_at.between(window.start, window.end),
            ),
        )
    ).all()
    first: dict[str, list[float]] = {}
    resolution: dict[str, list[float]] = {}
    clocks = _clocks(rows, calendars)
    for row in rows:
        policy, paused = str(row.policy), row.resolution_paused
        created, met, resolved = aware(row.created_at), aware(row[2]), aware(row.resolved_at)
        assert created is not None
        clock = clocks[policy]
        if met is not None and window.start <= created < window.end:
            first.setdefault(policy, []).append(clock.between(created, met))
        if resolved is not None and window.start <= resolved < window.end:
            worked = clock.between(created, resolved) - sum(
                clock.between(max(a, created), min(b, resolved)) for a, b in _pauses(paused)
            )
            resolution.setdefault(policy, []).append(max(0.0, worked))
    return {"first_response": _figures(first), "resolution": _figures(resolution)}


def _clocks(rows: Sequence[Any], calendars: Mapping[str, Calendar]) -> dict[str, WorkingClock]:
    """One clock per policy in use, spanning its earliest creation to its latest end."""
    spans: dict[str, tuple[datetime, datetime]] = {}
    for policy, created, met, resolved, _ in rows:
        times = [t for t in (aware(created), aware(met), aware(resolved)) if t is not None]
        low, high = spans.get(policy, (min(times), max(times)))
        spans[policy] = (min(low, *times), max(high, *times))
    return {policy: WorkingClock(calendars[policy], *span) for policy, span in spans.items()}


def _pauses(text: str | None) -> list[tuple[datetime, datetime]]:
    found = []
    for a, b in json.loads(text or "[]"):
        low, high = aware(datetime.fromisoformat(a)), aware(datetime.fromisoformat(b))
        assert low is not None and high is not None
        found.append((low, high))
    return found


def _figures(values: dict[str, list[float]]) -> dict[str, Any]:
    everything = [v for policy_values in values.values() for v in policy_values]
    return {
        "overall": _stats(everything),
        "by_policy": [{"key": key, **_stats(values[key])} for key in sorted(values)],
    }


def _stats(values: list[float]) -> dict[str, Any]:
    """Count, mean and nearest-rank median and p90 (rank ceil(p*n)), to one decimal."""
    if not values:
        return {"count": 0, "mean": None, "median": None, "p90": None}
    ordered = sorted(values)

    def rank(share: float) -> float:
        return round(ordered[max(1, math.ceil(share * len(ordered))) - 1], 1)

    return {
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered), 1),
        "median": rank(0.5),
        "p90": rank(0.9),
    }
