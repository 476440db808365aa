"""Report benchmark: a year of a busy desk (200,000 tickets by default) on SQLite, then the time
``postdesk report`` takes for it, as the real command line in a fresh process.

Run from the repository root: ``python bench/bench_reports.py [--tickets 200000]``. The data is
generated (seeded, so every run is the same): tickets over the last 365 days with a working-day
rhythm, their first mail, the acknowledgement, agent replies after a log-normal delay, customer
follow-ups, solves, CSAT requests and ratings, reopenings, spam and quarantined messages.
The baseline, measured in the same run, is ``postdesk report`` on an empty database (process
start, configuration, schema check): the ratio shows what the figures themselves cost.
Target: under 5 s for the year.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, insert

from postdesk.daemon.store.db import make_engine, upgrade_schema
from postdesk.models.schema import Event, Message, OutboxItem, QuarantineItem, Ticket
from postdesk.models.sla import TicketSla
from tests.support import write_config

HELPDESK = "support@example.com"
AGENTS = [f"agent{n}@example.com" for n in range(8)]
CATEGORIES = ["billing", "shipping", "returns", "account", "technical", "other"]
CHANNELS = ["smtp"] * 6 + ["imap:main"] * 3 + ["imap:sales"] + ["ingest"]
BATCH = 20_000
# Two SLA policies, so the business-time figures walk a calendar with a DST change every year.
SLA_TOML = """
[[sla.calendars]]
name = "office"
timezone = "Europe/Berlin"
hours = "Mon-Fri 09:00-17:00"

[[sla.calendars]]
name = "always"
timezone = "Europe/Berlin"
hours = "24x7"

[[sla.policies]]
name = "urgent"
match = { category = "technical" }
calendar = "always"
first_response = "2h"
resolution = "1d"

[[sla.policies]]
name = "routine"
calendar = "office"
first_response = "8h"
resolution = "3d"
"""
TARGET_SECONDS = 5.0


def raw_mail(rng: random.Random, number: int, author: str) -> bytes:
    """A plausible mail of about a kilobyte."""
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 160)))
    return (
        f"Return-Path: <{author}>\r\nReceived: from mx.example.org by mail.example.com\r\n"
        f"From: {author}\r\nTo: {HELPDESK}\r\nSubject: Request {number}\r\n"
        f"Message-ID: <{number}.{rng.random()}@example.org>\r\nDate: Mon, 1 Jan 2026 10:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


WORDS = ["hello", "order", "invoice", "printer", "refund", "password", "login", "thanks",
         "parcel", "delayed", "broken", "screen", "urgent", "charge", "twice", "cancel"]  # fmt: skip


class Rows:
    """Rows to insert, flushed in batches."""

    def __init__(self, engine: Engine) -> None:
        """Insert into ``engine``."""
        self.engine = engine
        self.pending: dict[Any, list[dict[str, Any]]] = {}
        self.counts: dict[str, int] = {}

    def add(self, table: Any, row: dict[str, Any]) -> None:
        """Queue one row; flush the table's batch when it is full."""
        batch = self.pending.setdefault(table, [])
        batch.append(row)
        if len(batch) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Insert the queued rows of every table, in the order the tables were first seen."""
        for name in list(self.pending):
            batch = self.pending.get(name) or []
            if batch:
                with self.engine.begin() as conn:
                    conn.execute(insert(name), batch)
                key = name.__tablename__
                self.counts[key] = self.counts.get(key, 0) + len(batch)
            self.pending[name] = []


def created_times(rng: random.Random, count: int, end: datetime) -> Iterator[datetime]:
    """``count`` moments in the 365 days before ``end``, busier on working days and hours."""
    start = end - timedelta(days=365)
    moments = []
    while len(moments) < count:
        moment = start + timedelta(seconds=rng.uniform(0, 365 * 86400))
        weight = (0.35 if moment.weekday() >= 5 else 1.0) * (1.0 if 7 <= moment.hour < 19 else 0.3)
        if rng.random() < weight:
            moments.append(moment)
    yield from sorted(moments)


def generate(engine: Engine, tickets: int, now: datetime) -> dict[str, int]:
    """Write the generated desk into ``engine``; returns row counts per table."""
    rng = random.Random(15)
    rows = Rows(engine)
    later: list[tuple[Any, dict[str, Any]]] = []  # a ticket's other rows, added after it
    ids = {"message": 0, "event": 0, "outbox": 0}
    rows_sla: list[dict[str, Any]] = []  # added after the ticket too

    def message(ticket: int, direction: str, author: str, at: datetime, **extra: Any) -> None:
        ids["message"] += 1
        text = "Thanks, we are looking into it." if direction == "out" else "Please help."
        later.append((
            Message,
            {
                "id": ids["message"], "ticket_id": ticket, "direction": direction,
                "message_id": f"<{ids['message']}@bench>", "author": author, "internal": False,
                "auto": False, "subject": f"Request {ticket}", "text": text, "new_text": text,
                "channel": "outbox", "possible_duplicate": False, "defects": "",
                "raw": raw_mail(rng, ticket, author), "created_at": at, **extra,
            },
        ))  # fmt: skip

    def event(ticket: int, kind: str, at: datetime, detail: dict[str, Any], actor: str) -> None:
        ids["event"] += 1
        later.append((
            Event,
            {"id": ids["event"], "ticket_id": ticket, "at": at, "actor": actor, "kind": kind,
             "detail": json.dumps(detail)},
        ))  # fmt: skip

    for number, created in enumerate(created_times(rng, tickets, now), start=1):
        requester = f"customer{rng.randint(1, tickets // 3)}@example.org"
        spam = rng.random() < 0.03
        category = None if spam else rng.choice(CATEGORIES)
        agent = None if spam or rng.random() < 0.05 else rng.choice(AGENTS)
        status, solved_at, rating = "open", None, None
        replied: datetime | None = None
        message(number, "in", requester, created, channel=rng.choice(CHANNELS))
        event(number, "created", created, {"requester": requester}, requester)
        message(number, "out", HELPDESK, created, auto=True)
        if spam:
            status = "closed"
            event(number, "spam", created + timedelta(minutes=rng.randint(5, 600)), {}, AGENTS[0])
        elif agent and rng.random() < 0.9:
            replied = created + timedelta(seconds=rng.lognormvariate(math.log(3 * 3600), 1.2))
            message(number, "in", agent, replied)
            message(number, "out", HELPDESK, replied)
            if rng.random() < 0.3:
                message(number, "in", requester, replied + timedelta(hours=rng.uniform(1, 30)))
            done = replied + timedelta(seconds=rng.lognormvariate(math.log(86400), 1.0))
            if done < now and rng.random() < 0.92:
                status, solved_at = "solved", done
                event(number, "status", done, {"from": "open", "to": "solved"}, agent)
                ids["outbox"] += 1
                later.append((
                    OutboxItem,
                    {"id": ids["outbox"], "ticket_id": number, "kind": "csat_request",
                     "recipient": requester, "recipients": json.dumps([requester]),
                     "envelope_from": HELPDESK, "message_id": f"<o{ids['outbox']}@bench>",
                     "auto": True, "raw": b"x", "status": "sent", "created_at": done,
                     "next_attempt_at": done, "sent_at": done},
                ))  # fmt: skip
                rated = done + timedelta(hours=rng.uniform(1, 72))
                if rated < now and rng.random() < 0.35:
                    rating = rng.choices([1, 2, 3, 4, 5], weights=[5, 5, 10, 30, 50])[0]
                    event(number, "rated", rated, {"rating": rating}, requester)
                reopened = done + timedelta(days=rng.uniform(0.5, 10))
                if reopened < now and rng.random() < 0.05:
                    status, solved_at = "open", None
                    event(number, "reopened", reopened, {"by": requester}, requester)
        if not spam:
            rows_sla.append(sla_row(rng, number, category, created, replied, solved_at))
        rows.add(
            Ticket,
            {"id": number, "number": number, "subject": f"Request {number}", "status": status,
             "priority": "normal", "category": category, "group_name": None,
             "requester": requester, "assignee": agent, "spam": spam, "rating": rating,
             "created_at": created, "updated_at": solved_at or created, "solved_at": solved_at},
        )  # fmt: skip
        for table, row in later:
            rows.add(table, row)
        later.clear()
        for row in rows_sla:
            rows.add(TicketSla, row)
        rows_sla.clear()
    rows.flush()
    for index in range(tickets // 100):
        rows.add(
            QuarantineItem,
            {"spool_id": f"q{index}", "reason": "unparseable", "channel": "smtp", "raw": b"x",
             "status": rng.choice(["held", "replayed"]),
             "created_at": now - timedelta(days=rng.uniform(0, 365))},
        )  # fmt: skip
    rows.flush()
    return rows.counts


def sla_row(
    rng: random.Random,
    number: int,
    category: str | None,
    created: datetime,
    replied: datetime | None,
    solved: datetime | None,
) -> dict[str, Any]:
    """A ticket's ``ticket_sla`` row; one in ten resolutions was paused (pending) for a while."""
    urgent = category == "technical"
    first_due = created + timedelta(hours=2 if urgent else 8)
    resolution_due = created + timedelta(days=1 if urgent else 3)
    paused: list[list[str]] = []
    if solved is not None and rng.random() < 0.1:
        low = created + (solved - created) * rng.uniform(0.1, 0.5)
        high = low + (solved - low) * rng.uniform(0.1, 0.8)
        paused.append([low.isoformat(), high.isoformat()])
    return {
        "ticket_id": number, "policy": "urgent" if urgent else "routine",
        "timezone": "Europe/Berlin", "first_response_due": first_due,
        "first_response_warn_at": first_due - timedelta(minutes=30), "first_response_met_at": replied,
        "resolution_due": resolution_due, "resolution_warn_at": resolution_due - timedelta(hours=2),
        "resolved_at": solved, "resolution_paused": json.dumps(paused), "updated_at": created,
    }  # fmt: skip


def timed(config: Path, *args: str) -> tuple[float, float, str]:
    """Run ``postdesk report ARGS`` in a fresh process: wall seconds, CPU seconds, output."""
    cpu = _children_cpu()
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "report", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=config.parent,
    )
    return time.perf_counter() - started, _children_cpu() - cpu, result.stdout


def cpu_reference() -> float:
    """CPU seconds of a fixed pure-Python loop: how fast this machine's CPU is right now."""
    started = time.process_time()
    sum(range(50_000_000))
    return time.process_time() - started


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Generate the desk, time the report, print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument("--workdir", type=Path, help="reuse the desk generated there before")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="postdesk-bench-reports-"))
    (workdir / "empty").mkdir(parents=True, exist_ok=True)
    empty = write_config(workdir / "empty", f"sqlite:///{workdir / 'empty' / 'data' / 'e.db'}")
    database = workdir / "data" / "postdesk.db"
    config = write_config(workdir, f"sqlite:///{database}", extra=SLA_TOML)
    marker = workdir / "generated.json"
    if not marker.exists():
        engine = make_engine(f"sqlite:///{database}")
        upgrade_schema(engine)
        started = time.perf_counter()
        now = datetime.now(UTC)
        counts = generate(engine, args.tickets, now)
        engine.dispose()
        print(f"generated in {time.perf_counter() - started:.0f} s")
        marker.write_text(json.dumps({"now": now.isoformat(), "counts": counts}))
    generated = json.loads(marker.read_text())
    now = datetime.fromisoformat(generated["now"])
    print(
        ", ".join(f"{n:,} {table}" for table, n in generated["counts"].items())
        + f"; database {database.stat().st_size / 2**20:.0f} MiB"
    )
    year = (
        "--from",
        (now - timedelta(days=365)).date().isoformat(),
        "--to",
        now.date().isoformat(),
    )
    runs = {
        "baseline: empty database, last 28 days": (empty, ()),
        "last 28 days (default), by week, text": (config, ()),
        "year, by week, text": (config, (*year, "--by", "week")),
        "year, by day, --json": (config, (*year, "--by", "day", "--json")),
        "year, by month, --html": (
            config,
            (*year, "--by", "month", "--html", str(workdir / "r.html")),
        ),
    }
    print(f"load average before the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"CPU reference, sum(range(50_000_000)) in this process: {cpu_reference():.2f} s CPU")
    print(f"{'run (best of ' + str(args.repeat) + ')':<42} {'wall':>7} {'CPU':>7}  CPU vs baseline")
    baseline = 0.0
    for label, (cfg, extra) in runs.items():
        wall, cpu, _ = min(timed(cfg, *extra) for _ in range(args.repeat))
        baseline = baseline or cpu
        verdict = "" if cfg is empty else ("  met" if wall < TARGET_SECONDS else "  over 5 s")
        print(f"{label:<42} {wall:6.2f}s {cpu:6.2f}s  {cpu / baseline:5.1f}x{verdict}")
    print(
        "(wall is what a user waits; CPU is the process's own time, summed over the two "
        "connections that read sections at once, so it may exceed wall)"
    )
    _, _, output = timed(config, *year, "--by", "month")
    print("\n" + "\n".join(output.splitlines()[:12]))
    print(f"\nwork dir (database, HTML report): {workdir}")


if __name__ == "__main__":
    main()
