"""End to end: a real daemon mails each agent's digest once a day; mail caught by a real sink."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.agentmail import ALICE, BOB, DAVE, GENEROUS_LIMITS, daemon_with_agents, plain_text
from tests.support import Daemon, SmtpSink, make_mail, send, wait_until

SLA = """
[routing]
default_group = "L1"
round_robin = ["L1"]

[sla]
check_interval = "1s"

[[sla.calendars]]
name = "always"
timezone = "UTC"
hours = "24x7"

[[sla.policies]]
name = "fast"
calendar = "always"
first_response = "2s"
resolution = "1h"
"""


def _digests(sink: SmtpSink, address: str) -> list[str]:
    return [plain_text(m) for m in sink.to(address) if "open ticket" in m["Subject"]]


def _minute_just_passed() -> str:
    """The wall-clock minute (UTC) before now, or 00:00 just after midnight."""
    now = datetime.now(UTC)
    earlier = now - timedelta(minutes=1)
    return "00:00" if earlier.date() != now.date() else f"{earlier:%H:%M}"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_real_daemon_mails_the_digest_once(
    tmp_path: Path, database_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, database_url, sink, routing=SLA) as daemon:
        sent_at = time.monotonic()
        send(daemon.port, make_mail())
        wait_until(lambda: daemon.tickets()[0]["assignee"] if daemon.tickets() else None)
        assignee = str(daemon.tickets()[0]["assignee"])
    assert not _digests(sink, assignee), "no digest while digest_at is unset"

    config = daemon.config.read_text()
    digest = f'check_interval = "1s"\ndigest_at = "{_minute_just_passed()}"\n'
    daemon.config.write_text(config.replace('check_interval = "1s"\n', digest))
    time.sleep(max(0.0, sent_at + 2.5 - time.monotonic()))  # past the 2 s first response due
    restarted = Daemon(daemon.config, tmp_path, env=GENEROUS_LIMITS)
    restarted.start()
    try:
        text = wait_until(lambda: _digests(sink, assignee), timeout=30, what="the digest")[0]
    finally:
        restarted.stop()
    assert "[Example #1]" in text
    assert "OVERDUE: first response by" in text
    assert "UNANSWERED" in text
    assert "1 open, 1 overdue, 0 at risk, 1 unanswered." in text
    others = [a for a in (ALICE, BOB, DAVE) if a != assignee]
    assert all(not _digests(sink, other) for other in others), "no tickets, no digest"

    restarted.start()  # a restart the same day sends nothing again
    try:
        time.sleep(3)  # three rounds of the 1-second scheduler
    finally:
        restarted.stop()
    assert len(_digests(sink, assignee)) == 1
