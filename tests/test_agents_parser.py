"""The agent command parser: commands at the top of a reply, errors, and the body left over."""

from __future__ import annotations

import pytest

from postdesk.daemon.agents.commands import parse_line, parse_reply
from postdesk.daemon.steps.rating import rating_of


def test_commands_at_the_top_are_taken_and_the_body_kept() -> None:
    reply = parse_reply(
        "\n#status solved\n#PRIORITY  high\n\n#assign me\nHello Carol,\n#not a command\n"
    )
    assert [(c.name, c.argument) for c in reply.commands] == [
        ("status", "solved"),
        ("priority", "high"),
        ("assign", "me"),
    ]
    assert reply.errors == []
    assert reply.body == "Hello Carol,\n#not a command"


def test_a_reply_without_commands_is_all_body() -> None:
    reply = parse_reply("Hello,\n#status solved\n")
    assert reply.commands == [] and reply.body == "Hello,\n#status solved"


def test_note_takes_its_text_and_flags_the_reply() -> None:
    reply = parse_reply("#note customer is upset\nInternal details.")
    assert reply.has("note") and not reply.has("spam")
    assert reply.commands[0].argument == "customer is upset"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("#frobnicate now", "unknown command #frobnicate"),
        ("#status", "expected one value"),
        ("#status very solved", "expected one value"),
        ("#spam please", "takes no value"),
        ("# heading", "not a command"),
        ("#", "not a command"),
    ],
)
def test_wrong_commands_are_reported(line: str, problem: str) -> None:
    command, error = parse_line(line)
    assert command is None and problem in error


def test_errors_do_not_stop_the_other_commands() -> None:
    reply = parse_reply("#bogus\n#status open\nText")
    assert [c.name for c in reply.commands] == ["status"]
    assert len(reply.errors) == 1 and reply.body == "Text"


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("5", 5),
        ("1 - slow", 1),
        ("Good!", 5),
        ("bad.", 1),
        ("  4\nthanks", 4),
        ("6", None),
        ("great", None),
        ("", None),
        ("It is still broken", None),
    ],
)
def test_ratings(text: str, rating: int | None) -> None:
    assert rating_of(text) == rating
