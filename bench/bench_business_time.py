"""Business time for a year of tickets: the report's running-total clock against walking the
SLA calendar per ticket (``Calendar.between``, the baseline), on the same generated values.

    .venv/bin/python bench/bench_business_time.py [--tickets 200000]

Prints both times, their ratio, and the largest difference between the two answers.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from postdesk.daemon.config import SlaCalendarSettings
from postdesk.daemon.reports.business import WorkingClock
from postdesk.daemon.sla.rules import build_calendar


def main() -> None:
    """Generate the pairs, time both ways, print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=200_000)
    parser.add_argument("--baseline-sample", type=int, default=5_000)
    args = parser.parse_args()
    calendar = build_calendar(
        SlaCalendarSettings(
            name="office", timezone="Europe/Berlin", hours="Mon-Fri 09:00-17:00", holidays="DE"
        ),
        "bench",
    )
    rng = random.Random(15)
    year = datetime(2026, 1, 1, tzinfo=UTC)
    pairs = []
    for _ in range(args.tickets):
        created = year + timedelta(seconds=rng.uniform(0, 365 * 86400))
        pairs.append((created, created + timedelta(seconds=rng.expovariate(1 / (2 * 86400)))))
    low, high = min(a for a, _ in pairs), max(b for _, b in pairs)

    started = time.process_time()
    clock = WorkingClock(calendar, low, high)
    fast = clock.between(
        np.array([a.timestamp() for a, _ in pairs]), np.array([b.timestamp() for _, b in pairs])
    ).tolist()
    fast_seconds = time.process_time() - started

    sample = pairs[: args.baseline_sample]
    started = time.process_time()
    slow = [calendar.between(a, b).total_seconds() for a, b in sample]
    per_ticket = (time.process_time() - started) / len(sample)
    baseline_seconds = per_ticket * len(pairs)

    worst = max(abs(x - y) for x, y in zip(fast, slow, strict=False))
    print(f"tickets: {len(pairs)}")
    print(f"running-total clock: {fast_seconds:.3f} s CPU (layout and timestamps included)")
    print(
        f"Calendar.between per ticket (baseline, {len(sample)} measured, scaled): "
        f"{baseline_seconds:.3f} s CPU"
    )
    print(f"ratio baseline / clock: {baseline_seconds / fast_seconds:.1f}x")
    print(f"largest difference on the measured sample: {worst:.6f} s")


if __name__ == "__main__":
    main()
