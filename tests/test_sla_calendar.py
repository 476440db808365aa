"""Business-time arithmetic against a slow, obviously correct reference: one minute at a time.

Random calendars (timezones with and without daylight saving, half-hour and 45-minute
offsets, several ranges a day, ranges inside the skipped or repeated hour, national holidays,
extra closed days) and random instants near DST changes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from postdesk.daemon.config import ConfigError, SlaCalendarSettings
from postdesk.daemon.sla.calendar import Calendar
from postdesk.daemon.sla.rules import build_calendar, parse_duration, parse_hours

ZONES = (
    "UTC",
    "Europe/Moscow",
    "Europe/Berlin",
    "America/New_York",
    "America/Santiago",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Asia/Kolkata",  # +05:30
    "Pacific/Chatham",  # +12:45 / +13:45
)
DST_DAYS = (
    date(2026, 3, 8),  # US spring forward
    date(2026, 3, 29),  # EU spring forward
    date(2026, 4, 5),  # Lord Howe, Santiago fall back
    date(2026, 9, 6),  # Santiago spring forward
    date(2026, 9, 27),  # Chatham spring forward
    date(2026, 10, 4),  # Lord Howe spring forward
    date(2026, 10, 25),  # EU fall back
    date(2026, 11, 1),  # US fall back
    date(2026, 12, 31),  # New Year holidays
)
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MINUTE = timedelta(minutes=1)


def reference_open(calendar: Calendar, closed: set[date], instant: datetime) -> bool:
    """Is the office open at ``instant``? Read the wall clock in the office's timezone."""
    local = instant.astimezone(calendar.zone)
    if local.date() in closed:
        return False
    minute = local.hour * 60 + local.minute
    return any(start <= minute < end for start, end in calendar.weekly[local.weekday()])


def reference_add(
    calendar: Calendar,
    closed: set[date],
    start: datetime,
    minutes: int,
    paused: list[tuple[datetime, datetime]],
) -> datetime:
    cursor, left = start, minutes
    while left:
        in_pause = any(low <= cursor < high for low, high in paused)
        if not in_pause and reference_open(calendar, closed, cursor):
            left -= 1
        cursor += MINUTE
    return cursor


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@st.composite
def calendars(draw: st.DrawFn) -> tuple[Calendar, set[date]]:
    """A calendar from a random config, and every date it is closed on (for the reference)."""
    ranges = []
    for day in DAYS:
        for _ in range(draw(st.integers(0, 2))):
            start = draw(st.integers(0, 24 * 4 - 1)) * 15
            end = draw(st.integers(start // 15 + 1, 24 * 4)) * 15
            ranges.append(f"{day} {_clock(start)}-{_clock(end)}")
    hours = draw(st.sampled_from(["24x7", *([", ".join(ranges)] * 4)])) if ranges else "24x7"
    zone = draw(st.sampled_from(ZONES))
    country = draw(st.sampled_from(["", "", "RU", "DE-BY", "US"]))
    closed_days = draw(
        st.lists(st.dates(date(2026, 1, 1), date(2027, 3, 1)), max_size=8).map(sorted)
    )
    settings_ = SlaCalendarSettings(
        name="random",
        timezone=zone,
        hours=hours,
        holidays=country,
        closed=tuple(d.isoformat() for d in closed_days),
    )
    calendar = build_calendar(settings_, "sla.calendars[0]")
    weekly_minutes = sum(end - start for day in calendar.weekly for start, end in day)
    assume(weekly_minutes >= 600)
    everything = date(2026, 1, 1)
    closed = set()
    while everything < date(2027, 6, 1):
        if calendar.is_closed(everything):
            closed.add(everything)
        everything += timedelta(days=1)
    return calendar, closed


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    """A whole minute within two days of a daylight-saving change (or New Year)."""
    day = draw(st.sampled_from(DST_DAYS))
    base = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return base + timedelta(minutes=draw(st.integers(-2 * 1440, 2 * 1440)))


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(calendars(), instants(), st.integers(1, 600))
def test_add_matches_minute_stepping(
    calendar_and_closed: tuple[Calendar, set[date]], start: datetime, minutes: int
) -> None:
    calendar, closed = calendar_and_closed
    expected = reference_add(calendar, closed, start, minutes, [])
    assert calendar.add(start, timedelta(minutes=minutes)) == expected


@FAST
@given(calendars(), instants(), st.integers(1, 600), st.integers(0, 3000), st.integers(1, 3000))
def test_add_with_a_pause_matches_minute_stepping(
    calendar_and_closed: tuple[Calendar, set[date]],
    start: datetime,
    minutes: int,
    pause_after: int,
    pause_length: int,
) -> None:
    calendar, closed = calendar_and_closed
    pause = (
        start + timedelta(minutes=pause_after),
        start + timedelta(minutes=pause_after + pause_length),
    )
    expected = reference_add(calendar, closed, start, minutes, [pause])
    assert calendar.add(start, timedelta(minutes=minutes), [pause]) == expected


@FAST
@given(calendars(), instants(), st.integers(0, 3 * 1440))
def test_between_counts_the_open_minutes(
    calendar_and_closed: tuple[Calendar, set[date]], start: datetime, span: int
) -> None:
    calendar, closed = calendar_and_closed
    end = start + timedelta(minutes=span)
    expected = sum(1 for n in range(span) if reference_open(calendar, closed, start + n * MINUTE))
    assert calendar.between(start, end) == timedelta(minutes=expected)
    for n in range(0, span, 97):
        moment = start + n * MINUTE
        assert calendar.is_open(moment) == reference_open(calendar, closed, moment)


def office() -> Calendar:
    return build_calendar(
        SlaCalendarSettings(
            name="office", timezone="Europe/Moscow", hours="Mon-Fri 10:00-19:00", holidays="RU"
        ),
        "sla.calendars[0]",
    )


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC) - timedelta(hours=3)  # Moscow is UTC+3 all year


def test_friday_evening_urgent_ticket_is_due_monday_morning() -> None:
    assert office().add(msk(2026, 11, 27, 18, 0), timedelta(hours=2)) == msk(2026, 11, 30, 11, 0)


def test_russian_new_year_holidays_are_closed() -> None:
    # 30 Dec 2026 18:30: half an hour that day; 31 Dec is a day off in Russia that year,
    # 1-8 January are the New Year holidays, 9-10 January a weekend: the rest on 11 January.
    due = office().add(msk(2026, 12, 30, 18, 30), timedelta(hours=2))
    assert due == msk(2027, 1, 11, 11, 30)


def test_extra_closed_days_and_subdivision_holidays() -> None:
    calendar = build_calendar(
        SlaCalendarSettings(
            name="munich",
            timezone="Europe/Berlin",
            hours="Mon-Fri 09:00-17:00",
            holidays="DE-BY",
            closed=("2026-12-07",),
        ),
        "k",
    )
    monday_noon = datetime(2026, 12, 7, 11, 0, tzinfo=UTC)
    assert not calendar.is_open(monday_noon), "an extra closed day"
    assert not calendar.is_open(datetime(2026, 1, 6, 11, 0, tzinfo=UTC)), "Epiphany in Bavaria"
    assert calendar.is_open(datetime(2026, 12, 8, 11, 0, tzinfo=UTC))


def test_skipped_hour_is_not_working_time() -> None:
    # Berlin jumps from 02:00 to 03:00 on 29 March 2026: 01:00-04:00 holds two hours there.
    calendar = build_calendar(
        SlaCalendarSettings(name="night", timezone="Europe/Berlin", hours="Sun 01:00-04:00"), "k"
    )
    start = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # 01:00 CET
    assert calendar.between(start, start + timedelta(hours=5)) == timedelta(hours=2)
    assert calendar.add(start, timedelta(hours=2)) == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)


def test_repeated_hour_counts_twice() -> None:
    # Berlin goes back from 03:00 to 02:00 on 25 October 2026: 01:00-04:00 holds four hours.
    calendar = build_calendar(
        SlaCalendarSettings(name="night", timezone="Europe/Berlin", hours="Sun 01:00-04:00"), "k"
    )
    start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # 01:00 CEST
    assert calendar.between(start, start + timedelta(hours=6)) == timedelta(hours=4)


def test_a_calendar_closed_forever_has_no_due_time() -> None:
    calendar = office()
    pause = [(msk(2026, 11, 30, 9, 0), datetime.max.replace(tzinfo=UTC))]
    assert calendar.add(msk(2026, 11, 30, 9, 0), timedelta(hours=1), pause) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("3d", timedelta(days=3)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_durations(value: str, expected: timedelta) -> None:
    assert parse_duration(value, "k") == expected


@pytest.mark.parametrize("value", ["", "2", "h", "-1h", "0m", "2 weeks"])
def test_bad_durations_name_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^sla\.policies\[0\]\.resolution: "):
        parse_duration(value, "sla.policies[0].resolution")


def test_several_ranges_and_wrapping_day_ranges() -> None:
    weekly = parse_hours("Mon-Thu 09:00-18:00, Fri 09:00-16:00, Sat-Mon 20:00-22:00", "k")
    assert weekly[0] == ((540, 1080), (1200, 1320))
    assert weekly[3] == ((540, 1080),)
    assert weekly[4] == ((540, 960),)
    assert weekly[5] == weekly[6] == ((1200, 1320),)


@pytest.mark.parametrize(
    "value", ["Mon-Fri", "Mon-Fri 19:00-10:00", "Moo 10:00-11:00", "Mon 10:00-25:00"]
)
def test_bad_hours_name_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^sla\.calendars\[1\]\.hours: "):
        parse_hours(value, "sla.calendars[1].hours")
