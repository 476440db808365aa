"""First response and resolution in business time: counted in each policy's SLA calendar.

- First response: creation to ``first_response_met_at``, for tickets created in the window; the
  agent is the one whose mail the first public reply was relayed from (as in the speed section).
- Resolution: creation to ``resolved_at`` less the time the clock stood still
  (``resolution_paused``: pending, or solved before a reopen), for tickets resolved in the window;
  the agent is the assignee.

One SQL statement reads the per-ticket times. The pauses are stored as JSON text, so the working
time is counted here, but without walking the calendar per ticket: each calendar's open intervals
over the span of the data are laid out once with running totals, and the working time up to any
instant is one binary search (:class:`WorkingClock`). Figures: count, mean, nearest-rank median
and p90 in seconds, overall, per policy, per agent and per category; tickets whose policy no
longer exists are left out.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection

from postdesk.daemon.config import Settings
from postdesk.daemon.reports.periods import Window
from postdesk.daemon.reports.speed import replying_agent
from postdesk.daemon.reports.volume import not_spam
from postdesk.daemon.sla.calendar import Calendar
from postdesk.daemon.sla.rules import build_rules
from postdesk.models.schema import Ticket
from postdesk.models.sla import TicketSla

DIMENSIONS = ("policy", "agent", "category")
NO_PAUSE = "[]"


def policy_calendars(settings: Settings) -> dict[str, Calendar]:
    """Each configured SLA policy's calendar, by policy name."""
    return {policy.name: policy.calendar for policy in build_rules(settings).policies}


class WorkingClock:
    """Working seconds of one calendar between instants in [low, high], by running totals.

    Instants are POSIX timestamps (seconds, floats), so a ticket costs two binary searches.
    """

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

    def upto(self, moment: float) -> float:
        """Working seconds from ``low`` to the timestamp ``moment``."""
        index = bisect_right(self.starts, moment) - 1
        if index < 0:
            return 0.0
        return self.before[index] + min(moment, self.ends[index]) - self.starts[index]

    def between(self, start: float, end: float) -> float:
        """Working seconds from ``start`` to ``end`` (zero when ``end`` is not later)."""
        return max(0.0, self.upto(end) - self.upto(start))


class Groups:
    """Durations collected overall and per key of each dimension."""

    def __init__(self) -> None:
        """No durations yet."""
        self.everything: list[float] = []
        self.by: dict[str, dict[str, list[float]]] = {d: {} for d in DIMENSIONS}

    def add(self, seconds: float, *keys: str) -> None:
        """One ticket's duration with its key in each of :data:`DIMENSIONS`, in order."""
        self.everything.append(seconds)
        for dimension, key in zip(DIMENSIONS, keys, strict=True):
            self.by[dimension].setdefault(key, []).append(seconds)

    def figures(self) -> dict[str, Any]:
        """``overall`` and a ``by_<dimension>`` list sorted by key."""
        found: dict[str, Any] = {"overall": _stats(self.everything)}
        for dimension, groups in self.by.items():
            found[f"by_{dimension}"] = [{"key": k, **_stats(groups[k])} for k in sorted(groups)]
        return found


def compute(conn: Connection, window: Window, calendars: Mapping[str, Calendar]) -> dict[str, Any]:
    """The business-time figures of ``window`` for the policies in ``calendars``."""
    rows = conn.execute(
        select(
            TicketSla.policy,
            Ticket.created_at,
            TicketSla.first_response_met_at,
            TicketSla.resolved_at,
            TicketSla.resolution_paused,
            func.coalesce(replying_agent(Ticket.id, TicketSla.first_response_met_at), ""),
            func.coalesce(Ticket.assignee, ""),
            func.coalesce(Ticket.category, ""),
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
    start, end = window.start.timestamp(), window.end.timestamp()
    first, resolution = Groups(), Groups()
    clocks = _clocks(rows, calendars)
    for policy, created_at, met_at, resolved_at, paused, responder, assignee, category in rows:
        clock = clocks[policy]
        created = _stamp(created_at)
        if met_at is not None and start <= created < end:
            first.add(clock.between(created, _stamp(met_at)), policy, responder, category)
        if resolved_at is not None and start <= (resolved := _stamp(resolved_at)) < end:
            worked = clock.between(created, resolved)
            if paused and paused != NO_PAUSE:
                worked -= sum(
                    clock.between(max(a, created), min(b, resolved)) for a, b in _pauses(paused)
                )
            resolution.add(max(0.0, worked), policy, assignee, category)
    return {"first_response": first.figures(), "resolution": resolution.figures()}


def _stamp(moment: datetime) -> float:
    """A stored time as a POSIX timestamp (SQLite hands back naive datetimes, all UTC)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _clocks(rows: Sequence[Any], calendars: Mapping[str, Calendar]) -> dict[str, WorkingClock]:
    """One clock per policy in use, spanning its earliest creation to its latest end."""
    spans: dict[str, tuple[datetime, datetime]] = {}
    for policy, created, met, resolved, *_ in rows:
        times = [t for t in (created, met, resolved) if t is not None]
        low, high = spans.get(policy, (min(times), max(times)))
        spans[policy] = (min(low, *times), max(high, *times))
    return {
        policy: WorkingClock(calendars[policy], _aware(low), _aware(high))
        for policy, (low, high) in spans.items()
    }


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _pauses(text: str) -> list[tuple[float, float]]:
    """The stored (start, end) ISO pairs as timestamps."""
    return [
        (_stamp(datetime.fromisoformat(a)), _stamp(datetime.fromisoformat(b)))
        for a, b in json.loads(text)
    ]


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
