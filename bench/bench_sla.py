"""SLA arithmetic benchmark: due times per second on an office calendar with holidays and DST.

Run from the repository root: ``python bench/bench_sla.py [--tickets 2000]``. Computes the
due time of a 24-working-hour target for tickets created at random moments of 2026 on a
Mon-Fri 09:00-18:00 Berlin calendar with Bavarian holidays, and prints the rate and the
ratio against the baseline measured in the same run: stepping one minute at a time.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta

from postdesk.daemon.config import SlaCalendarSettings
from postdesk.daemon.sla.calendar import Calendar
from postdesk.daemon.sla.rules import build_calendar

TARGET = timedelta(hours=24)


def minute_stepping(calendar: Calendar, start: datetime, target: timedelta) -> datetime:
    """The baseline: walk one minute at a time, counting open minutes."""
    cursor, left = start, int(target.total_seconds() // 60)
    while left:
        if calendar.is_open(cursor):
            left -= 1
        cursor += timedelta(minutes=1)
    return cursor


def main() -> None:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--baseline", type=int, default=20, help="tickets for the baseline")
    args = parser.parse_args()
    calendar = build_calendar(
        SlaCalendarSettings(
            name="office", timezone="Europe/Berlin", hours="Mon-Fri 09:00-18:00", holidays="DE-BY"
        ),
        "bench",
    )
    chooser = random.Random(12)
    year = datetime(2026, 1, 1, tzinfo=UTC)
    starts = [year + timedelta(minutes=chooser.randrange(365 * 1440)) for _ in range(args.tickets)]

    began = time.perf_counter()
    dues = [calendar.add(start, TARGET) for start in starts]
    fast = time.perf_counter() - began

    began = time.perf_counter()
    for start, due in zip(starts[: args.baseline], dues, strict=False):
        assert minute_stepping(calendar, start, TARGET) == due
    slow = time.perf_counter() - began

    fast_rate = args.tickets / fast
    slow_rate = args.baseline / slow
    print(f"interval walk : {fast_rate:10.0f} due times/s ({args.tickets} tickets)")
    print(f"minute steps  : {slow_rate:10.0f} due times/s ({args.baseline} tickets, baseline)")
    print(f"ratio         : {fast_rate / slow_rate:10.1f}x faster than the baseline")


if __name__ == "__main__":
    main()
