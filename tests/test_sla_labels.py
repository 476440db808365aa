"""The team's own words: status labels over the base states, priority levels, rating words."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from postdesk.daemon.config import ConfigError, Settings, WorkflowSettings, load_settings
from postdesk.daemon.sla.labels import default_label, find_status, normalize, settle
from postdesk.daemon.steps.rating import rating_of
from postdesk.models.schema import Ticket
from tests.agentmail import (
    ALICE,
    ROUTING_TOML,
    daemon_with_agents,
    plain_text,
    reply_to,
    wait_mails,
)
from tests.support import SmtpSink, make_mail, send, wait_until

WORKFLOW = """
[workflow]
statuses = { "Accepted for consideration" = "new", "Being resolved" = "open", "In progress" = "open", "Postponed" = "pending", "Solved successfully" = "solved" }
priorities = ["low", "medium", "high"]
default_priority = "medium"
rating_words = { satisfactory = 5, insufficient = 1 }
"""


def team() -> Settings:
    return dataclasses.replace(
        Settings(),
        workflow=WorkflowSettings(
            statuses={"Being resolved": "open", "In progress": "open", "Postponed": "pending"},
            priorities=("low", "medium", "high"),
            default_priority="medium",
        ),
    )


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ('"Being resolved"', ("Being resolved", "open")),
        ("being-resolved", ("Being resolved", "open")),
        ("BEING_RESOLVED", ("Being resolved", "open")),
        ("\u201cin progress\u201d", ("In progress", "open")),
        ("pending", ("Postponed", "pending")),
        ("open", ("Being resolved", "open")),
        ("closed", ("closed", "closed")),
        ("resolved", None),
    ],
)
def test_find_status(typed: str, expected: tuple[str, str] | None) -> None:
    assert find_status(team(), typed) == expected


def test_defaults_keep_todays_words() -> None:
    settings = Settings()
    assert [default_label(settings, s) for s in ("new", "open", "pending", "solved", "closed")] == [
        "new",
        "open",
        "pending",
        "solved",
        "closed",
    ]
    assert normalize(" 'Being  Resolved' ") == "being resolved"


def test_settle_gives_system_changes_the_states_label_and_a_known_priority() -> None:
    ticket = Ticket(status="pending", status_label="Being resolved", priority="normal")
    settle(team(), ticket)
    assert (ticket.status_label, ticket.priority) == ("Postponed", "medium")
    ticket.status_label = "In progress"
    ticket.status = "open"
    settle(team(), ticket)
    assert ticket.status_label == "In progress", "an agent's choice among open labels stays"


def test_the_teams_rating_words_count_as_ratings() -> None:
    words = {"satisfactory": 5, "Insufficient": 1}
    assert rating_of("Satisfactory, thank you", words) == 5
    assert rating_of("insufficient.", words) == 1
    assert rating_of("good", words) == 5, "the built-in words still work"
    assert rating_of("satisfactory") is None, "only when configured"


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "postdesk.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            '[workflow]\nstatuses = { "Being resolved" = "working" }\n',
            "workflow.statuses.'Being resolved'",
        ),
        ('[workflow]\npriorities = ["low", "low"]\n', "workflow.priorities"),
        ('[workflow]\npriorities = ["low", "high"]\n', "workflow.default_priority"),
        ("[workflow]\nrating_words = { great = 7 }\n", "workflow.rating_words.'great'"),
        (
            '[workflow]\npriorities = ["low", "normal", "high"]\n'
            '[[sla.calendars]]\nname = "c"\n'
            '[[sla.policies]]\nname = "p"\ncalendar = "c"\nmatch = { priority = "urgent" }\n',
            "sla.policies[0].match.priority",
        ),
    ],
)
def test_bad_mappings_are_startup_errors_naming_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(_config(tmp_path, text), environ={})
    assert str(raised.value).startswith(f"{key}: ")


def test_labels_in_commands_mail_and_json(tmp_path: Path, sqlite_url: str, sink: SmtpSink) -> None:
    with daemon_with_agents(tmp_path, sqlite_url, sink, routing=ROUTING_TOML + WORKFLOW) as daemon:
        send(daemon.port, make_mail())
        note = wait_mails(sink, ALICE, 1, "notification")[0]
        assert "Status:    Accepted for consideration" in plain_text(note)
        data = json.loads(daemon.cli("ticket", "1", "--json").stdout)
        assert (data["status"], data["state"], data["priority"]) == (
            "Accepted for consideration",
            "new",
            "medium",
        )

        body = '#status "being resolved"\n#priority High\n\nWe are on it.'
        send(daemon.port, reply_to(note, body, ALICE), sender=ALICE)
        wait_until(lambda: daemon.ticket(1)["state"] == "open", what="the status command")
        data = json.loads(daemon.cli("ticket", "1", "--json").stdout)
        assert (data["status"], data["state"], data["priority"]) == (
            "Being resolved",
            "open",
            "high",
        )

        send(
            daemon.port,
            reply_to(note, "#status Postponed\n#priority urgent\n", ALICE),
            sender=ALICE,
        )
        error = wait_until(
            lambda: [m for m in sink.to(ALICE) if "not run" in m["Subject"]], what="the error"
        )[0]
        assert "unknown priority (one of low, medium, high)" in plain_text(error)
        data = json.loads(daemon.cli("ticket", "1", "--json").stdout)
        assert (data["status"], data["state"]) == ("Postponed", "pending")
