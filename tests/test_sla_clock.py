"""The clocks and the escalation scheduler on a real database (SQLite and PostgreSQL).

Time is the injected clock of ``Services``, so every step is exact; the mails are the real
outbox rows, and "two daemons" are two runtimes on the same database.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from postdesk.daemon.config import load_settings
from postdesk.daemon.runtime import Runtime, open_runtime
from postdesk.daemon.sla.clock import refresh
from postdesk.daemon.sla.escalation import check_once
from postdesk.daemon.store.db import transaction
from postdesk.daemon.store.slaview import sla_dict, sla_state
from postdesk.models.crm import Organization
from postdesk.models.schema import Contact, Event, OutboxItem, Ticket
from postdesk.models.sla import TicketSla
from tests.support import write_config

START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
SLA_TOML = """
[[agents]]
email = "alice@example.com"
groups = ["L1"]

[[agents]]
email = "bob@example.com"
groups = ["L1"]

[[agents]]
email = "dave@example.net"
groups = ["L2"]

[sla]
check_interval = "1s"

[[sla.calendars]]
name = "always"
timezone = "Europe/Berlin"
hours = "24x7"

[[sla.policies]]
name = "urgent"
match = { priority = "urgent, high" }
calendar = "always"
first_response = "10m"
resolution = "1h"
escalate_to = "L2"

[[sla.policies]]
name = "premium"
match = { tier = "premium" }
calendar = "always"
first_response = "20m"
resolution = "2h"

[[sla.policies]]
name = "acme"
match = { organization = "Acme Ltd" }
calendar = "always"
first_response = "30m"
resolution = "3h"

[[sla.policies]]
name = "default"
calendar = "always"
first_response = "1h"
resolution = "4h"
"""


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def at(self, **delta: float) -> None:
        self.now = START + timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runtime(tmp_path: Path, database_url: str, clock: Clock) -> Iterator[Runtime]:
    config = write_config(tmp_path, database_url, extra=SLA_TOML)
    opened = open_runtime(load_settings(str(config), environ={}))
    services = dataclasses.replace(opened.services, clock=clock)
    yield dataclasses.replace(opened, services=services)
    opened.engine.dispose()


def _ticket(runtime: Runtime, **values: object) -> int:
    with transaction(runtime.factory) as session:
        ticket = Ticket(
            number=1,
            subject="Printer on fire",
            requester="carol@example.org",
            status="new",
            group_name="L1",
            created_at=START,
            **values,
        )
        session.add(ticket)
        session.flush()
        refresh(session, runtime.services.sla, ticket, START)
        return ticket.id


def _change(runtime: Runtime, now: datetime, reply: bool = False, **values: object) -> TicketSla:
    with transaction(runtime.factory) as session:
        ticket = session.execute(select(Ticket)).scalar_one()
        for name, value in values.items():
            setattr(ticket, name, value)
        return refresh(session, runtime.services.sla, ticket, now, public_reply=reply)


def _view(runtime: Runtime, now: datetime) -> dict[str, object]:
    with runtime.factory() as session:
        ticket = session.execute(select(Ticket)).scalar_one()
        return sla_dict(session, ticket, now)


def _iso(**delta: float) -> str:
    return (START + timedelta(**delta)).isoformat()


def test_default_policy_due_times_and_states(runtime: Runtime) -> None:
    _ticket(runtime)
    view = _view(runtime, START)
    assert view == {
        "policy": "default",
        "first_response_due": _iso(hours=1),
        "resolution_due": _iso(hours=4),
        "first_response_met_at": None,
        "resolution_met_at": None,
        "state": "ok",
    }
    assert _view(runtime, START + timedelta(minutes=48))["state"] == "warning"
    assert _view(runtime, START + timedelta(minutes=60))["state"] == "breached"


def test_changing_priority_reselects_the_policy_from_creation(runtime: Runtime) -> None:
    _ticket(runtime)
    row = _change(runtime, START + timedelta(minutes=5), priority="urgent")
    assert row.policy == "urgent"
    assert _view(runtime, START + timedelta(minutes=5))["first_response_due"] == _iso(minutes=10)
    assert _view(runtime, START + timedelta(minutes=5))["resolution_due"] == _iso(hours=1)
    _change(runtime, START + timedelta(minutes=6), priority="normal")
    assert _view(runtime, START)["first_response_due"] == _iso(hours=1)


def test_the_requesters_crm_tier_and_organization_choose_the_policy(runtime: Runtime) -> None:
    _ticket(runtime)
    with transaction(runtime.factory) as session:
        session.add(Organization(name="Acme Ltd", key="acme ltd", domain="example.org"))
        session.add(Contact(email="carol@example.org", name="Carol"))
    row = _change(runtime, START + timedelta(minutes=1))
    assert row.policy == "acme", "organization from the requester's mail domain"
    with transaction(runtime.factory) as session:
        contact = session.execute(select(Contact)).scalar_one()
        contact.tier = "premium"
    row = _change(runtime, START + timedelta(minutes=2))
    assert row.policy == "premium", "the tier policy comes first"
    assert _view(runtime, START)["first_response_due"] == _iso(minutes=20)


def test_public_reply_meets_first_response_and_solving_meets_resolution(runtime: Runtime) -> None:
    _ticket(runtime)
    _change(runtime, START + timedelta(minutes=20), reply=True, status="open")
    view = _view(runtime, START + timedelta(minutes=90))
    assert view["first_response_met_at"] == _iso(minutes=20)
    assert view["state"] == "ok", "the first response is met; resolution runs"
    solved = START + timedelta(hours=2)
    _change(runtime, solved, status="solved", solved_at=solved)
    view = _view(runtime, START + timedelta(hours=9))
    assert view["resolution_met_at"] == _iso(hours=2) and view["state"] == "met"


def test_pending_pauses_resolution_and_a_customer_reply_resumes_it(runtime: Runtime) -> None:
    _ticket(runtime)
    _change(runtime, START + timedelta(minutes=30), reply=True, status="pending")
    paused = _view(runtime, START + timedelta(hours=5))
    assert paused["state"] == "paused" and paused["resolution_due"] is None
    _change(runtime, START + timedelta(hours=3), status="open")  # the customer answered
    view = _view(runtime, START + timedelta(hours=3))
    assert view["resolution_due"] == _iso(hours=4 + 2.5), "2.5 h pending do not count"
    assert view["state"] == "ok"


def test_reopening_a_solved_ticket_resumes_resolution_without_the_solved_time(
    runtime: Runtime,
) -> None:
    _ticket(runtime)
    _change(
        runtime, START + timedelta(hours=1), status="solved", solved_at=START + timedelta(hours=1)
    )
    _change(runtime, START + timedelta(hours=2), status="open", solved_at=None)
    view = _view(runtime, START + timedelta(hours=2))
    assert view["resolution_met_at"] is None
    assert view["resolution_due"] == _iso(hours=5)


def _alerts(runtime: Runtime) -> list[tuple[str, str]]:
    with runtime.factory() as session:
        rows = session.execute(
            select(OutboxItem.kind, OutboxItem.recipient).order_by(OutboxItem.id)
        )
        return [(kind, recipient) for kind, recipient in rows.all()]


def _events(runtime: Runtime) -> list[tuple[str, dict[str, object]]]:
    with runtime.factory() as session:
        rows = session.execute(select(Event.kind, Event.detail).where(Event.kind.like("sla.%")))
        return [(kind, json.loads(detail)) for kind, detail in rows.all()]


def test_warning_then_breach_each_once_across_two_daemons(
    runtime: Runtime, tmp_path: Path, database_url: str, clock: Clock
) -> None:
    _ticket(runtime, assignee="alice@example.com", priority="urgent")
    other = dataclasses.replace(
        runtime, services=dataclasses.replace(runtime.services, clock=clock)
    )
    clock.at(minutes=7)
    assert check_once(runtime.services, runtime.factory) == []
    clock.at(minutes=8)
    sent = check_once(runtime.services, runtime.factory)
    assert [(a.event, a.target) for a in sent] == [("sla.warning", "first_response")]
    assert check_once(other.services, other.factory) == [], "the other daemon sends nothing"
    assert _alerts(runtime) == [("sla_warning", "alice@example.com")], "warning: the assignee"

    clock.at(minutes=10)
    assert [a.event for a in check_once(other.services, other.factory)] == ["sla.breached"]
    assert check_once(runtime.services, runtime.factory) == []
    assert sorted(_alerts(runtime)[1:]) == [
        ("sla_breached", "alice@example.com"),
        ("sla_breached", "bob@example.com"),
        ("sla_breached", "dave@example.net"),
    ], "breach: assignee, group L1 and the escalation group L2"
    kinds = [(kind, detail["target"], detail["escalated_to"]) for kind, detail in _events(runtime)]
    assert kinds == [
        ("sla.warning", "first response", ""),
        ("sla.breached", "first response", "L2"),
    ]


def test_no_alerts_for_met_paused_or_solved_targets(runtime: Runtime, clock: Clock) -> None:
    _ticket(runtime)
    _change(runtime, START + timedelta(minutes=5), reply=True, status="pending")
    clock.at(hours=10)
    assert check_once(runtime.services, runtime.factory) == []
    assert _alerts(runtime) == []


def test_state_without_a_policy_is_ok() -> None:
    assert sla_state(None, "open", START) == "ok"


RECORDER = """
from postdesk.plugins import hookimpl

heard = []


@hookimpl
def postdesk_notify(event, ticket, detail):
    heard.append((event, ticket["number"], detail["target"]))
"""


def test_alerts_reach_the_postdesk_notify_hook_after_commit(
    tmp_path: Path, sqlite_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sla_recorder.py").write_text(RECORDER)
    monkeypatch.syspath_prepend(str(tmp_path))
    extra = '[plugins]\nenabled = ["sla_recorder"]\n' + SLA_TOML
    opened = open_runtime(load_settings(str(write_config(tmp_path, sqlite_url, extra=extra)), {}))
    runtime = dataclasses.replace(
        opened, services=dataclasses.replace(opened.services, clock=clock)
    )
    try:
        _ticket(runtime, assignee="alice@example.com")
        clock.at(minutes=50)
        check_once(runtime.services, runtime.factory)
        runtime.services.plugins.drain(5.0)
    finally:
        runtime.services.plugins.close()
        opened.engine.dispose()
    import sla_recorder  # type: ignore[import-not-found]

    assert sla_recorder.heard == [("sla.warning", 1, "first_response")]
