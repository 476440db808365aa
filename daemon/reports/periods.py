"""The date range of a report and its periods (day, week, month) in the report's time zone.

Periods begin at local midnight, weeks on Monday, so a day across a DST change lasts 23 or 25
hours. Every boundary is handed to the database as a UTC instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

GRAINS = ("day", "week", "month")
DEFAULT_DAYS = 28


@dataclass(frozen=True)
class Period:
    """One row of a per-period table: a label and its [start, end) in UTC."""

    label: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Window:
    """What a report covers: local dates ``first``..``last`` inclusive, cut into periods."""

    first: date
    last: date
    zone: ZoneInfo
    by: str

    @property
    def start(self) -> datetime:
        """Local midnight starting ``first``, in UTC."""
        return local_midnight(self.first, self.zone)

    @property
    def end(self) -> datetime:
        """Local midnight after ``last`` (exclusive), in UTC."""
        return local_midnight(self.last + timedelta(days=1), self.zone)

    def periods(self) -> list[Period]:
        """The periods of the window, calendar-aligned and clipped to it."""
        found: list[Period] = []
        day = self.first
        while day <= self.last:
            following = min(_next_boundary(day, self.by), self.last + timedelta(days=1))
            start, end = local_midnight(day, self.zone), local_midnight(following, self.zone)
            found.append(Period(_label(day, self.by), start, end))
            day = following
        return found

    def describe(self) -> dict[str, str]:
        """The window as JSON-ready strings."""
        return {
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "timezone": self.zone.key,
            "by": self.by,
            "start": iso(self.start),
            "end": iso(self.end),
        }


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant local ``day`` begins in ``zone``, as an aware UTC datetime."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def iso(moment: datetime) -> str:
    """An aware datetime as ISO 8601 UTC with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def make_window(
    first: date | None, last: date | None, by: str, zone: ZoneInfo, today: date
) -> Window:
    """The window for optional ``--from``/``--to`` dates; the last 28 days up to ``today`` by
    default. Raises ValueError when the range is empty or the grain unknown."""
    if by not in GRAINS:
        raise ValueError(f"--by must be one of {', '.join(GRAINS)}")
    last = last or (today if first is None else max(today, first))
    first = first or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise ValueError(f"--from {first} is after --to {last}")
    return Window(first, last, zone, by)


def last_full_week(now: datetime, zone: ZoneInfo) -> Window:
    """Monday to Sunday of the week before the one ``now`` falls in, locally."""
    today = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday() + 7)
    return Window(monday, monday + timedelta(days=6), zone, "day")


def parse_date(value: str) -> date:
    """A YYYY-MM-DD date; ValueError naming the expected form otherwise."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not a date (expected YYYY-MM-DD): {value!r}") from None


def _next_boundary(day: date, by: str) -> date:
    if by == "day":
        return day + timedelta(days=1)
    if by == "week":
        return day + timedelta(days=7 - day.weekday())
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _label(day: date, by: str) -> str:
    if by == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return day.isoformat()[:7] if by == "month" else day.isoformat()
