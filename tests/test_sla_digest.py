"""The agents' daily digest on a real database (SQLite and PostgreSQL), with an injected clock.

The mails are the real outbox rows; "two daemons" are two runtimes on the same database.
"""

from __future__ import annotations

import dataclasses
import email
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from postdesk.daemon.config import ConfigError, load_settings
from postdesk.daemon.runtime import Runtime, open_runtime
from postdesk.daemon.sla.clock import refresh
from postdesk.daemon.sla.digest import open_tickets, send_due
from postdesk.daemon.sla.rules import build_rules
from postdesk.daemon.store.db import transaction
from postdesk.models.schema import Message, OutboxItem, Participant, Ticket
from tests.support import write_config

ALICE, BOB, DAVE = "alice@example.com", "bob@example.com", "dave@example.net"
DAY = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # 09:00 in Berlin, the digest time
BERLIN = ZoneInfo("Europe/Berlin")
DIGEST_TOML = f"""
[[agents]]
email = "{ALICE}"
name = "Alice"
groups = ["L1"]

[[agents]]
email = "{BOB}"
groups = ["L1"]

[[agents]]
email = "{DAVE}"
groups = ["L2"]

[sla]
check_interval = "1s"
digest_at = "09:00"

[[sla.calendars]]
name = "always"
timezone = "Europe/Berlin"
hours = "24x7"

[[sla.policies]]
name = "default"
calendar = "always"
first_response = "1h"
resolution = "4h"
"""


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = DAY

    def __call__(self) -> datetime:
        return self.now


def _open(tmp_path: Path, database_url: str, clock: Clock, extra: str = DIGEST_TOML) -> Runtime:
    config = write_config(tmp_path, database_url, extra=extra)
    opened = open_runtime(load_settings(str(config), environ={}))
    return dataclasses.replace(opened, services=dataclasses.replace(opened.services, clock=clock))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runtime(tmp_path: Path, database_url: str, clock: Clock) -> Iterator[Runtime]:
    opened = _open(tmp_path, database_url, clock)
    yield opened
    opened.engine.dispose()


def _message(ticket: Ticket, at: datetime, author: str, direction: str = "in") -> Message:
    return Message(
        ticket_id=ticket.id,
        message_id=f"<{ticket.number}.{at.timestamp()}@example.org>",
        direction=direction,
        author=author,
        raw=b"",
        created_at=at,
    )


def _ticket(
    runtime: Runtime,
    number: int,
    created: datetime,
    assignee: str | None,
    *,
    status: str = "open",
    sla: bool = True,
    replied: bool = False,
    assistant: str | None = None,
) -> None:
    """A ticket with the customer's first mail, optionally an agent's public reply."""
    with transaction(runtime.factory) as session:
        ticket = Ticket(
            number=number,
            subject=f"Problem {number}",
            requester="carol@example.org",
            status=status,
            assignee=assignee,
            created_at=created,
        )
        session.add(ticket)
        session.flush()
        session.add(_message(ticket, created, "carol@example.org"))
        if replied:
            session.add(_message(ticket, created + timedelta(minutes=5), "x@h", "out"))
        if assistant:
            session.add(Participant(ticket_id=ticket.id, email=assistant, role="assistant"))
        if sla:
            refresh(session, runtime.services.sla, ticket, created)


def _tickets(runtime: Runtime) -> None:
    _ticket(runtime, 1, DAY - timedelta(days=2), ALICE)  # breached, unanswered
    _ticket(runtime, 2, DAY - timedelta(days=1), BOB, sla=False, replied=True, assistant=ALICE)
    _ticket(runtime, 3, DAY - timedelta(days=3), ALICE, status="solved")
    _ticket(runtime, 4, DAY - timedelta(minutes=50), ALICE)  # 50 of 60 minutes: at risk
    _ticket(runtime, 5, DAY - timedelta(hours=5), "carol@example.org")


def _digests(runtime: Runtime) -> list[tuple[list[str], EmailMessage]]:
    with runtime.factory() as session:
        items = session.execute(
            select(OutboxItem).where(OutboxItem.kind == "digest").order_by(OutboxItem.id)
        ).scalars()
        return [
            (
                [item.recipient],
                email.message_from_bytes(item.raw, policy=default),  # type: ignore[misc]
            )
            for item in items
            if item.ticket_id is None
        ]


def _text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def test_selection_oldest_first_with_marks(runtime: Runtime) -> None:
    _tickets(runtime)
    with runtime.factory() as session:
        rows = open_tickets(session, runtime.services.settings, ALICE.upper(), DAY, BERLIN)
        bob = open_tickets(session, runtime.services.settings, BOB, DAY, BERLIN)
        dave = open_tickets(session, runtime.services.settings, DAVE, DAY, BERLIN)
    assert [r.number for r in rows] == [1, 2, 4]
    marks = [(r.role, r.overdue, r.at_risk, r.unanswered) for r in rows]
    assert marks == [
        ("assignee", True, False, True),
        ("assistant", False, False, False),
        ("assignee", False, True, True),
    ]
    assert rows[0].created == "2026-11-28 09:00"  # in the digest's timezone
    assert rows[0].due.startswith("first response by 2026-11-28 10:00 CET")
    assert [(r.number, r.role) for r in bob] == [(2, "assignee")]
    assert dave == []


def test_customer_follow_up_after_a_reply_is_unanswered_again(runtime: Runtime) -> None:
    _ticket(runtime, 1, DAY - timedelta(days=1), ALICE, replied=True)
    with runtime.factory() as session:
        assert not open_tickets(session, runtime.services.settings, ALICE, DAY, BERLIN)[
            0
        ].unanswered
    with transaction(runtime.factory) as session:
        ticket = session.execute(select(Ticket)).scalar_one()
        session.add(_message(ticket, DAY - timedelta(hours=1), "carol@example.org"))
        session.add(_message(ticket, DAY - timedelta(minutes=30), ALICE))  # an agent's note
    with runtime.factory() as session:
        assert open_tickets(session, runtime.services.settings, ALICE, DAY, BERLIN)[0].unanswered


def test_digest_is_sent_once_per_agent_per_day_across_daemons(
    runtime: Runtime, clock: Clock, tmp_path: Path, database_url: str
) -> None:
    _tickets(runtime)
    clock.now = DAY - timedelta(minutes=1)
    assert send_due(runtime.services, runtime.factory) == []  # 08:59 in Berlin
    clock.now = DAY + timedelta(minutes=3)
    assert send_due(runtime.services, runtime.factory) == [ALICE, BOB]
    assert send_due(runtime.services, runtime.factory) == []  # a later round
    restarted = _open(tmp_path, database_url, clock)  # a restart on the same database
    try:
        assert send_due(restarted.services, restarted.factory) == []
    finally:
        restarted.engine.dispose()

    digests = _digests(runtime)
    assert [to for to, _mail in digests] == [[ALICE], [BOB]]
    alice = digests[0][1]
    assert alice["Subject"] == "Example Support: your 3 open tickets on 2026-11-30, 1 overdue"
    assert alice["Auto-Submitted"] == "auto-replied"  # as all automatic mail (compose.py)
    text = _text(alice)
    assert text.index("#1]") < text.index("#2]") < text.index("#4]")
    assert "#3]" not in text and "#5]" not in text
    assert "OVERDUE: first response by 2026-11-28 10:00 CET" in text
    assert "AT RISK: first response by 2026-11-30 09:10 CET" in text
    assert text.count("UNANSWERED") == 2
    assert "3 open, 1 overdue, 1 at risk, 2 unanswered." in text
    html = alice.get_body(("html",))
    assert isinstance(html, EmailMessage)
    assert "<strong>OVERDUE</strong>" in str(html.get_content())

    clock.now = DAY + timedelta(days=1)  # the next morning: once more
    assert send_due(runtime.services, runtime.factory) == [ALICE, BOB]


def test_two_runtimes_claim_each_digest_once(
    tmp_path: Path, database_url: str, clock: Clock
) -> None:
    first = _open(tmp_path, database_url, clock)
    second = _open(tmp_path, database_url, clock)
    try:
        _tickets(first)
        sent = send_due(second.services, second.factory) + send_due(first.services, first.factory)
        assert sent == [ALICE, BOB]
        assert len(_digests(first)) == 2
    finally:
        first.engine.dispose()
        second.engine.dispose()


def test_digest_off_by_default_and_config_errors(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path, sqlite_url)
    assert load_settings(str(config), environ={}).sla.digest_at == ""
    cases = {
        'digest_at = "9am"': "sla.digest_at",
        'digest_at = "24:00"': "sla.digest_at",
        'digest_at = "09:00"\ndigest_timezone = "Mars/Base"': "sla.digest_timezone",
    }
    for line, key in cases.items():
        config = write_config(tmp_path, sqlite_url, extra=f"[sla]\n{line}\n")
        with pytest.raises(ConfigError, match=key):
            load_settings(str(config), environ={})
    config = write_config(tmp_path, sqlite_url, extra='[sla]\ndigest_at = "7:30"\n')
    digest = build_rules(load_settings(str(config), environ={})).digest
    assert digest is not None and digest.timezone.key == "UTC" and digest.at.hour == 7
    assert (
        build_rules(load_settings(str(write_config(tmp_path, sqlite_url)), environ={})).digest
        is None
    )
