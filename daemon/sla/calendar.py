"""Business calendars: when the support team works, and arithmetic in working time.

A calendar is a timezone, weekly opening hours in local time, and closed local dates (national
holidays from the ``holidays`` library plus extra days). An instant is *open* when its local
time falls in one of the ranges of its local weekday and its local date is not closed. Every
function here takes and returns timezone-aware UTC datetimes.

The arithmetic walks stretches of constant UTC offset: inside one, local time is UTC plus a
fixed offset, so the open moments are plain intervals; daylight-saving changes only end a
stretch. Skipped local times (spring forward) are never open, repeated ones (fall back) are
open twice, exactly as a clock on the office wall would say.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

Interval = tuple[datetime, datetime]
Ranges = tuple[tuple[int, int], ...]  # minutes after local midnight, [start, end)

SEARCH_LIMIT = timedelta(days=3 * 366)  # an answer further away than this is "never"
_PROBE = timedelta(hours=6)  # offsets never change twice within this (tz database fact)
_CHUNK = timedelta(days=2)  # longest piece handed out at once


@dataclass(frozen=True)
class Calendar:
    """Working time: ``weekly[weekday]`` ranges (Monday = 0) in ``zone``, minus closed dates."""

    name: str
    zone: tzinfo
    weekly: tuple[Ranges, ...]
    is_closed: Callable[[date], bool]

    def is_open(self, instant: datetime) -> bool:
        """True when ``instant`` is working time (the definition the arithmetic follows)."""
        local = instant.astimezone(self.zone)
        since_midnight = local - datetime.combine(local.date(), time(), local.tzinfo)
        ranges = self.weekly[local.weekday()]
        return not self.is_closed(local.date()) and any(
            timedelta(minutes=first) <= since_midnight < timedelta(minutes=after)
            for first, after in ranges
        )

    def open_intervals(self, start: datetime, end: datetime) -> Iterator[Interval]:
        """The working intervals within [start, end), in order, as UTC pairs."""
        for piece_start, piece_end, offset in _stretches(self.zone, start, end):
            yield from self._intervals_at_offset(piece_start, piece_end, offset)

    def _intervals_at_offset(
        self, start: datetime, end: datetime, offset: timedelta
    ) -> Iterator[Interval]:
        day = (start + offset).date()
        last = (end + offset).date()
        while day <= last:
            if not self.is_closed(day):
                midnight = datetime.combine(day, time(), UTC) - offset
                for first, after in self.weekly[day.weekday()]:
                    low = max(start, midnight + timedelta(minutes=first))
                    high = min(end, midnight + timedelta(minutes=after))
                    if low < high:
                        yield low, high
            day += timedelta(days=1)

    def add(
        self, start: datetime, amount: timedelta, excluded: Sequence[Interval] = ()
    ) -> datetime | None:
        """The instant at which ``amount`` of working time after ``start`` has passed.

        Time inside ``excluded`` intervals (sorted, e.g. a paused clock) does not count; an
        interval may end at ``datetime.max``-like far future to mean "still paused". None when
        the answer lies beyond :data:`SEARCH_LIMIT` (a calendar that is never open).
        """
        start = start.astimezone(UTC)
        if amount <= timedelta():
            return start
        remaining = amount
        horizon = start + SEARCH_LIMIT
        frozen = min((low for low, high in excluded if high >= horizon), default=horizon)
        cursor = start
        while cursor < min(horizon, frozen):
            window_end = min(cursor + timedelta(days=31), horizon)
            for low, high in _subtract(self.open_intervals(cursor, window_end), excluded):
                if high - low >= remaining:
                    return low + remaining
                remaining -= high - low
            cursor = window_end
        return None

    def between(
        self, start: datetime, end: datetime, excluded: Sequence[Interval] = ()
    ) -> timedelta:
        """The working time from ``start`` to ``end`` (zero when ``end`` is not later)."""
        total = timedelta()
        for low, high in _subtract(self.open_intervals(start, end), excluded):
            total += high - low
        return total


def _stretches(
    zone: tzinfo, start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime, timedelta]]:
    """Split [start, end) into pieces of constant UTC offset: (from, to, offset).

    Pieces are at most :data:`_CHUNK` long, so a caller that stops early looks no further.
    """
    cursor = start
    while cursor < end:
        offset = _offset(zone, cursor)
        limit = min(end, cursor + _CHUNK)
        probe = cursor
        while probe < limit and _offset(zone, min(probe + _PROBE, limit)) == offset:
            probe = min(probe + _PROBE, limit)
        if probe >= limit:
            yield cursor, limit, offset
            cursor = limit
            continue
        change = _first_change(zone, probe, min(probe + _PROBE, limit), offset)
        yield cursor, change, offset
        cursor = change


def _first_change(zone: tzinfo, low: datetime, high: datetime, offset: timedelta) -> datetime:
    """The first whole second in (low, high] whose offset differs from ``offset``.

    Offsets change on whole seconds (the tz database stores transitions in seconds).
    """
    if _offset(zone, high) == offset:
        return high
    lo, hi = math.floor(low.timestamp()), math.ceil(high.timestamp())
    while hi - lo > 1:
        middle = (lo + hi) // 2
        if _offset(zone, datetime.fromtimestamp(middle, UTC)) == offset:
            lo = middle
        else:
            hi = middle
    return datetime.fromtimestamp(hi, UTC)


def _offset(zone: tzinfo, instant: datetime) -> timedelta:
    value = instant.astimezone(zone).utcoffset()
    assert value is not None
    return value


def _subtract(intervals: Iterator[Interval], excluded: Sequence[Interval]) -> Iterator[Interval]:
    """``intervals`` with the parts inside any of ``excluded`` cut out."""
    for low, high in intervals:
        pieces = [(low, high)]
        for cut_low, cut_high in excluded:
            pieces = [
                part
                for a, b in pieces
                for part in ((a, min(b, cut_low)), (max(a, cut_high), b))
                if part[0] < part[1]
            ]
        yield from pieces
