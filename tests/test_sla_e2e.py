"""End to end: the real daemon keeps SLA clocks and escalates; mail captured by a real sink."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.agentmail import (
    ALICE,
    BOB,
    DAVE,
    ROUTING_TOML,
    daemon_with_agents,
    events,
    plain_text,
    reply_to,
    wait_mails,
)
from tests.support import CUSTOMER, Daemon, SmtpSink, make_mail, send, wait_until

CALENDAR = """
[[sla.calendars]]
name = "always"
timezone = "Europe/Moscow"
hours = "24x7"
"""
ONE_MINUTE = f"""
default_group = "L1"

[sla]
check_interval = "1s"
{CALENDAR}
[[sla.policies]]
name = "fast"
calendar = "always"
first_response = "1m"
resolution = "1h"
escalate_to = "L2"
"""
HOURS = f"""
[sla]
check_interval = "1s"
{CALENDAR}
[[sla.policies]]
name = "default"
calendar = "always"
first_response = "1h"
resolution = "4h"
"""


def ticket_json(daemon: Daemon, number: int) -> dict[str, object]:
    """``postdesk ticket N --json``, run as a real command."""
    data: dict[str, object] = json.loads(daemon.cli("ticket", str(number), "--json").stdout)
    return data


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_breach_of_a_one_minute_target_is_mailed_once(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(
        tmp_path, sqlite_url, sink, routing=ROUTING_TOML + ONE_MINUTE
    ) as daemon:
        send(daemon.port, make_mail())
        wait_mails(sink, ALICE, 1, "notification of the new ticket")
        warning = wait_until(
            lambda: [m for m in sink.to(ALICE) if "SLA at risk" in m["Subject"]],
            timeout=70,
            what="the warning at 80% of the minute",
        )[0]
        assert "first response" in warning["Subject"]
        assert not [m for m in sink.to(DAVE) if "SLA" in m["Subject"]], "warnings stay in L1"
        breach = wait_until(
            lambda: [m for m in sink.to(DAVE) if "SLA breached" in m["Subject"]],
            timeout=70,
            what="the breach mail to the escalation group",
        )[0]
        assert "[Example #1]" in breach["Subject"]
        assert "group L2" in plain_text(breach)
        for agent in (ALICE, BOB):
            wait_until(
                lambda agent=agent: [m for m in sink.to(agent) if "SLA breached" in m["Subject"]],
                what=f"the breach mail to {agent}",
            )
        data = ticket_json(daemon, 1)
        sla = data["sla"]
        assert isinstance(sla, dict)
        assert sla["policy"] == "fast" and sla["state"] == "breached"
        assert sla["first_response_met_at"] is None
        assert str(data["created_at"]).endswith("+00:00")
        overdue = json.loads(daemon.cli("tickets", "--overdue", "--json").stdout)
        assert [t["number"] for t in overdue] == [1]
        kinds = [kind for _actor, kind, _detail in events(daemon, 1) if kind.startswith("sla.")]
        assert kinds == ["sla.warning", "sla.breached"]

    daemon.start()  # a restart sends nothing again
    try:
        send(daemon.port, make_mail(subject="Second", body="Another question\n"))
        wait_until(lambda: len(daemon.tickets()) == 2, what="the second ticket")
        breaches = [m for m in sink.to(DAVE) if "SLA breached: first response" in m["Subject"]]
        assert [m["Subject"].split()[1] for m in breaches] == ["#1]"]
    finally:
        daemon.stop()


@pytest.fixture
def hours_daemon(tmp_path: Path, database_url: str, sink: SmtpSink) -> Iterator[Daemon]:
    with daemon_with_agents(tmp_path, database_url, sink, routing=ROUTING_TOML + HOURS) as daemon:
        yield daemon


def test_agent_reply_meets_first_response_and_pending_pauses_resolution(
    hours_daemon: Daemon, sink: SmtpSink
) -> None:
    daemon = hours_daemon
    send(daemon.port, make_mail())
    note = wait_mails(sink, ALICE, 1, "notification")[0]
    assert "Due:       first response by" in plain_text(note)
    assert "(Europe/Moscow), policy default" in plain_text(note)

    send(daemon.port, reply_to(note, "#note\n\nChecking the logs first.", ALICE), sender=ALICE)
    wait_until(lambda: len(daemon.ticket(1)["messages"]) >= 3, what="the note")
    sla = ticket_json(daemon, 1)["sla"]
    assert isinstance(sla, dict) and sla["first_response_met_at"] is None, "notes do not count"

    answer = "#status pending\n\nHello Carol, which model is it?\n-- \nAlice"
    send(daemon.port, reply_to(note, answer, ALICE), sender=ALICE)
    relayed = wait_mails(sink, CUSTOMER, 2, "the relayed reply")[1]
    sla = ticket_json(daemon, 1)["sla"]
    assert isinstance(sla, dict)
    assert sla["first_response_met_at"] is not None
    assert sla["state"] == "paused" and sla["resolution_due"] is None

    send(daemon.port, reply_to(relayed, "It is a LaserJet 4.", CUSTOMER))
    wait_until(lambda: daemon.ticket(1)["status"] == "open", what="the customer's answer")
    data = ticket_json(daemon, 1)
    sla = data["sla"]
    assert isinstance(sla, dict) and sla["state"] == "ok"
    elapsed = datetime.fromisoformat(str(sla["resolution_due"])) - datetime.fromisoformat(
        str(data["created_at"])
    )
    assert elapsed > timedelta(hours=4), "the time spent pending moved the due time"
