"""The ``[sla]`` configuration turned into calendars and policies, checked once at start-up.

Every wrong value is a :class:`~postdesk.daemon.config.ConfigError` naming its key, e.g.
``sla.calendars[0].hours: ...``. See ``docs/sla.md`` for the shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from postdesk.daemon.config import ConfigError, Settings, SlaCalendarSettings, SlaPolicySettings
from postdesk.daemon.sla.calendar import Calendar, Ranges

if TYPE_CHECKING:  # the holidays library loads only when a calendar names a country
    import holidays

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MATCH_KEYS = ("priority", "category", "tier", "organization")
ALWAYS = "24x7"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_RANGE = re.compile(
    r"^(?P<days>[a-z]{3}(?:\s*-\s*[a-z]{3})?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$"
)


@dataclass(frozen=True)
class Policy:
    """One SLA policy: when it applies, on which calendar, and its two targets."""

    name: str
    match: dict[str, frozenset[str]]
    calendar: Calendar
    first_response: timedelta
    resolution: timedelta
    escalate_to: str

    def matches(self, facts: dict[str, str | None]) -> bool:
        """True when every key of ``match`` has one of its values in ``facts``."""
        return all((facts.get(key) or "").lower() in values for key, values in self.match.items())


@dataclass(frozen=True)
class DigestTime:
    """When the agents' daily digest goes out: a wall-clock time in a timezone."""

    at: time
    timezone: ZoneInfo


@dataclass(frozen=True)
class Rules:
    """The policies in order (first match wins) and the scheduler's settings."""

    policies: tuple[Policy, ...]
    warn_at: float
    check_interval: timedelta
    digest: DigestTime | None = None

    def select(self, facts: dict[str, str | None]) -> Policy | None:
        """The first policy matching ``facts`` (priority, category, tier, organization)."""
        return next((p for p in self.policies if p.matches(facts)), None)

    def matches_on(self, key: str) -> bool:
        """True when some policy matches on ``key``: facts no policy asks for are not looked up."""
        return any(key in p.match for p in self.policies)


def build_rules(full: Settings) -> Rules:
    """Parse and check ``[sla]`` against the priorities and agent groups that exist."""
    settings = full.sla
    levels = tuple(p.lower() for p in full.workflow.priorities)
    check_interval = parse_duration(settings.check_interval, "sla.check_interval")
    if not 0 < settings.warn_at < 1:
        raise ConfigError(f"sla.warn_at: must be between 0 and 1, got {settings.warn_at!r}")
    calendars: dict[str, Calendar] = {}
    for index, item in enumerate(settings.calendars):
        key = f"sla.calendars[{index}]"
        if item.name in calendars:
            raise ConfigError(f"{key}.name: calendar {item.name!r} is defined twice")
        calendars[item.name] = build_calendar(item, key)
    policies = tuple(
        _build_policy(item, f"sla.policies[{index}]", calendars, levels)
        for index, item in enumerate(settings.policies)
    )
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ConfigError("sla.policies: every policy needs a distinct name")
    return Rules(policies, settings.warn_at, check_interval, _digest_time(full))


def unstaffed_escalations(settings: Settings) -> list[str]:
    """A warning for each policy whose ``escalate_to`` group has no agent yet: its breach mail
    reaches the assignee and the ticket's group only. Not an error: the level above may be
    staffed later, and SPEC's own example escalates to "L2" with only an "L1" agent."""
    groups = {group for agent in settings.agents for group in agent.groups}
    return [
        f"sla.policies[{index}].escalate_to: no agent is in group {policy.escalate_to!r} yet; "
        "its breach mail goes to the assignee and the ticket's group only"
        for index, policy in enumerate(settings.sla.policies)
        if policy.escalate_to and policy.escalate_to not in groups
    ]


def _digest_time(full: Settings) -> DigestTime | None:
    """``[sla] digest_at`` in ``digest_timezone`` (else the first calendar's zone, else UTC)."""
    settings = full.sla
    if not settings.digest_at:
        return None
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", settings.digest_at.strip())
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ConfigError(f"sla.digest_at: not a time of day HH:MM: {settings.digest_at!r}")
    first = settings.calendars[0].timezone if settings.calendars else "UTC"
    name = settings.digest_timezone or first
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"sla.digest_timezone: not a known time zone (e.g. Europe/Berlin): {name!r}"
        ) from None
    return DigestTime(time(int(match.group(1)), int(match.group(2))), zone)


def parse_duration(value: str, key: str) -> timedelta:
    """``"30s"``, ``"30m"``, ``"2h"``, ``"3d"`` (``d`` = 24 hours) as a positive timedelta."""
    match = _DURATION.match(value.lower())
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"{key}: expected a duration such as 30m, 2h or 3d, got {value!r}")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def parse_hours(value: str, key: str) -> tuple[Ranges, ...]:
    """Weekly hours, ``"24x7"`` or ranges such as ``"Mon-Thu 09:00-18:00, Fri 09:00-16:00"``."""
    if value.strip().lower() == ALWAYS:
        return tuple(((0, 24 * 60),) for _ in DAYS)
    weekly: list[list[tuple[int, int]]] = [[] for _ in DAYS]
    for part in value.lower().split(","):
        match = _RANGE.match(part.strip())
        if match is None:
            raise ConfigError(
                f"{key}: expected '24x7' or ranges like 'Mon-Fri 10:00-19:00', got {part.strip()!r}"
            )
        first, _, last = match.group("days").replace(" ", "").partition("-")
        start, end = _minutes(match.group("start"), key), _minutes(match.group("end"), key)
        if first not in DAYS or (last or first) not in DAYS:
            raise ConfigError(f"{key}: unknown day in {part.strip()!r} (days: Mon..Sun)")
        if start >= end:
            raise ConfigError(
                f"{key}: {part.strip()!r} ends before it starts; split a night shift at 24:00"
            )
        low, high = DAYS.index(first), DAYS.index(last or first)
        days = range(low, high + 1) if low <= high else [*range(low, 7), *range(0, high + 1)]
        for day in days:
            weekly[day].append((start, end))
    return tuple(tuple(sorted(_merge(ranges))) for ranges in weekly)


def build_calendar(item: SlaCalendarSettings, key: str) -> Calendar:
    """One calendar from its settings."""
    if not item.name:
        raise ConfigError(f"{key}.name: every calendar needs a name")
    try:
        zone = ZoneInfo(item.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{key}.timezone: unknown timezone {item.timezone!r} (e.g. Europe/Moscow)"
        ) from None
    weekly = parse_hours(item.hours, f"{key}.hours")
    if not any(weekly):
        raise ConfigError(f"{key}.hours: the calendar is never open")
    closed: set[date] = set()
    for index, day in enumerate(item.closed):
        try:
            closed.add(date.fromisoformat(day))
        except ValueError:
            raise ConfigError(f"{key}.closed[{index}]: expected YYYY-MM-DD, got {day!r}") from None
    national = _national_holidays(item.holidays, f"{key}.holidays")

    def is_closed(day: date) -> bool:
        return day in closed or (national is not None and day in national)

    return Calendar(item.name, zone, weekly, is_closed)


def _national_holidays(value: str, key: str) -> holidays.HolidayBase | None:
    """The ``holidays`` calendar for ``"RU"`` or ``"DE-BY"`` (country, then subdivision)."""
    if not value:
        return None
    import holidays

    country, _, subdivision = value.strip().partition("-")
    try:
        return holidays.country_holidays(country.upper(), subdiv=subdivision.upper() or None)
    except NotImplementedError:
        raise ConfigError(f"{key}: no public holidays known for {value!r}") from None


def _build_policy(
    item: SlaPolicySettings, key: str, calendars: dict[str, Calendar], priorities: tuple[str, ...]
) -> Policy:
    if not item.name:
        raise ConfigError(f"{key}.name: every policy needs a name")
    calendar = calendars.get(item.calendar)
    if calendar is None:
        known = ", ".join(calendars) or "none defined"
        raise ConfigError(f"{key}.calendar: no calendar named {item.calendar!r} ({known})")
    match: dict[str, frozenset[str]] = {}
    for name, wanted in item.match.items():
        if name not in MATCH_KEYS:
            raise ConfigError(f"{key}.match.{name}: unknown key (known: {', '.join(MATCH_KEYS)})")
        values = frozenset(v.strip().lower() for v in wanted.split(",") if v.strip())
        if name == "priority" and not values <= set(priorities):
            raise ConfigError(
                f"{key}.match.priority: {wanted!r} names a priority that does not exist "
                f"(workflow.priorities: {', '.join(priorities)})"
            )
        match[name] = values
    return Policy(
        name=item.name,
        match=match,
        calendar=calendar,
        first_response=parse_duration(item.first_response, f"{key}.first_response"),
        resolution=parse_duration(item.resolution, f"{key}.resolution"),
        escalate_to=item.escalate_to,
    )


def _minutes(clock: str, key: str) -> int:
    hours, _, minutes = clock.partition(":")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise ConfigError(f"{key}: {clock!r} is not a time of day")
    return value


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching ranges of one day joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
