"""First response and resolution in business time: counted in each policy's SLA calendar.

- First response: creation to ``first_response_met_at``, for tickets created in the window; the
  agent is the one whose mail the first public reply was relayed from (as in the speed section).
- Resolution: creation to ``resolved_at`` less the time the clock stood still
  (``resolution_paused``: pending, or solved before a reopen), for tickets resolved in the window;
  the agent is the assignee.

One SQL statement reads the per-ticket times as POSIX seconds. The pauses are stored as JSON
text, so the working time is counted here, but without walking the calendar per ticket: each
calendar's open intervals over the span of the data are laid out once with running totals, and
the working time up to every instant of a policy's tickets is one vectorised binary search
(:class:`WorkingClock`, numpy). Figures: count, mean, nearest-rank median and p90 in seconds,
overall, per policy, per agent and per category; tickets whose policy no longer exists are left
out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection

from postdesk.daemon.config import Settings
from postdesk.daemon.reports.durations import Floats, encode, figures
from postdesk.daemon.reports.periods import Window
from postdesk.daemon.reports.speed import replying_agent
from postdesk.daemon.reports.sql import epoch
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

    Instants are arrays of POSIX timestamps: every ticket of a policy is counted in one call.
    """

    def __init__(self, calendar: Calendar, low: datetime, high: datetime) -> None:
        """Lay out the calendar's open intervals from ``low`` to ``high``."""
        intervals = [(a.timestamp(), b.timestamp()) for a, b in calendar.open_intervals(low, high)]
        bounds = np.array(intervals, dtype=np.float64).reshape(-1, 2)
        self.starts, self.ends = bounds[:, 0], bounds[:, 1]
        lengths = self.ends - self.starts
        self.before = np.cumsum(lengths) - lengths  # working seconds before each interval starts

    def upto(self, moments: Floats) -> Floats:
        """Working seconds from ``low`` to each of ``moments``."""
        index = np.searchsorted(self.starts, moments, side="right") - 1
        inside = index >= 0
        safe = np.maximum(index, 0)
        worked = self.before[safe] + np.minimum(moments, self.ends[safe]) - self.starts[safe]
        return np.where(inside, worked, 0.0)

    def between(self, starts: Floats, ends: Floats) -> Floats:
        """Working seconds from each start to its end (zero when the end is not later)."""
        return np.maximum(0.0, self.upto(ends) - self.upto(starts))


def compute(conn: Connection, window: Window, calendars: Mapping[str, Calendar]) -> dict[str, Any]:
    """The business-time figures of ``window`` for the policies in ``calendars``."""
    rows = conn.execute(
        select(
            TicketSla.policy,
            epoch(Ticket.created_at),
            epoch(TicketSla.first_response_met_at),
            epoch(TicketSla.resolved_at),
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
    policy, created, met, resolved, paused, responder, assignee, category = (
        list(column) for column in (zip(*rows, strict=True) if rows else [()] * 8)
    )
    times = {
        name: np.array(column, dtype=np.float64)  # None becomes NaN
        for name, column in (("created", created), ("met", met), ("resolved", resolved))
    }
    first, resolution = _working_times(policy, times, paused, calendars)
    start, end = window.start.timestamp(), window.end.timestamp()
    answered = (times["created"] >= start) & (times["created"] < end) & ~np.isnan(times["met"])
    done = (times["resolved"] >= start) & (times["resolved"] < end)
    policies, categories = encode(policy), encode(category)
    return {
        "first_response": figures(
            first,
            {"policy": policies, "agent": encode(responder), "category": categories},
            answered,
        ),
        "resolution": figures(
            resolution,
            {"policy": policies, "agent": encode(assignee), "category": categories},
            done,
        ),
    }


def _working_times(
    policy: list[str],
    times: dict[str, Floats],
    paused: list[str | None],
    calendars: Mapping[str, Calendar],
) -> tuple[Floats, Floats]:
    """Each row's first response and resolution in its policy's working time (NaN: not yet)."""
    created, met, resolved = times["created"], times["met"], times["resolved"]
    first, resolution = np.full(len(policy), np.nan), np.full(len(policy), np.nan)
    names = np.array(policy, dtype=object)
    for name in sorted(set(policy)):
        rows = np.flatnonzero(names == name)
        clock = _clock(calendars[name], np.concatenate([created[rows], met[rows], resolved[rows]]))
        first[rows] = clock.between(created[rows], met[rows])
        resolution[rows] = clock.between(created[rows], resolved[rows]) - _paused(
            clock, rows, created, resolved, paused
        )
    return first, np.maximum(resolution, 0.0)


def _clock(calendar: Calendar, moments: Floats) -> WorkingClock:
    """A clock spanning the earliest to the latest of ``moments`` (NaN ignored)."""
    low, high = np.nanmin(moments), np.nanmax(moments)
    return WorkingClock(calendar, _utc(float(low)), _utc(float(high)))


def _paused(
    clock: WorkingClock,
    rows: NDArray[np.intp],
    created: Floats,
    resolved: Floats,
    paused: list[str | None],
) -> Floats:
    """Working seconds of each row's pauses within its creation to resolution (zero if none)."""
    owners, lows, highs = [], [], []
    for position, row in enumerate(rows.tolist()):
        text = paused[row]
        if text and text != NO_PAUSE:
            for low, high in json.loads(text):
                owners.append(position)
                lows.append(_stamp(low))
                highs.append(_stamp(high))
    deducted = np.zeros(len(rows))
    if owners:
        where = np.array(owners)
        low = np.maximum(np.array(lows), created[rows][where])
        high = np.minimum(np.array(highs), resolved[rows][where])
        np.add.at(deducted, where, clock.between(low, high))
    return deducted


def _stamp(text: str) -> float:
    """A stored ISO time (UTC when it names no offset) as POSIX seconds."""
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
