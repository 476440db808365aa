"""The worked example of docs/sla.md: its configuration loads and gives the due times it shows."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from postdesk.daemon.config import ConfigError, load_settings
from postdesk.daemon.sla.rules import build_rules, unstaffed_escalations

DOC = Path(__file__).resolve().parents[1] / "docs" / "sla.md"
MOSCOW = ZoneInfo("Europe/Moscow")
AGENTS = '\n[[agents]]\nemail = "dave@example.net"\ngroups = ["L2"]\n'


def example_config(tmp_path: Path, extra: str = "") -> Path:
    block = re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None, "docs/sla.md lost its example configuration"
    path = tmp_path / "postdesk.toml"
    path.write_text(block.group(1) + AGENTS + extra)
    return path


@pytest.mark.parametrize(
    ("created", "priority", "category", "policy", "due"),
    [
        ((2026, 11, 27, 18, 0), "urgent", None, "urgent", (2026, 11, 30, 11, 0)),
        ((2026, 11, 27, 18, 0), "normal", None, "routine", (2026, 12, 2, 15, 0)),
        ((2026, 11, 3, 18, 0), "urgent", None, "urgent", (2026, 11, 5, 11, 0)),
        ((2026, 12, 30, 18, 30), "urgent", None, "urgent", (2027, 1, 11, 11, 30)),
        ((2026, 11, 28, 3, 0), "normal", "special", "special", (2026, 11, 28, 5, 0)),
    ],
)
def test_worked_example(
    tmp_path: Path,
    created: tuple[int, ...],
    priority: str,
    category: str | None,
    policy: str,
    due: tuple[int, ...],
) -> None:
    rules = build_rules(load_settings(str(example_config(tmp_path)), environ={}))
    chosen = rules.select(
        {"priority": priority, "category": category, "tier": None, "organization": None}
    )
    assert chosen is not None and chosen.name == policy
    start = datetime(*created, tzinfo=MOSCOW)
    assert chosen.calendar.add(start, chosen.first_response) == datetime(*due, tzinfo=MOSCOW)


def test_tier_policies_apply_to_premium_and_partner_requesters(tmp_path: Path) -> None:
    rules = build_rules(load_settings(str(example_config(tmp_path)), environ={}))
    facts = {"priority": "normal", "category": None, "organization": None}
    premium = rules.select({**facts, "tier": "Premium"})
    partner = rules.select({**facts, "tier": "partner"})
    assert premium is not None and premium.first_response == timedelta(hours=2)
    assert partner is not None and partner.first_response == timedelta(hours=5)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('\n[[sla.policies]]\nname = "x"\ncalendar = "nowhere"\n', r"sla\.policies\[5\]\.calendar"),
        (
            '\n[[sla.policies]]\nname = "x"\ncalendar = "office"\nmatch = { priority = "critical" }\n',
            r"sla\.policies\[5\]\.match\.priority",
        ),
        (
            '\n[[sla.policies]]\nname = "x"\ncalendar = "office"\nmatch = { colour = "red" }\n',
            r"sla\.policies\[5\]\.match\.colour",
        ),
        (
            '\n[[sla.calendars]]\nname = "mars"\ntimezone = "Mars/Olympus"\n',
            r"sla\.calendars\[2\]\.timezone",
        ),
        ('\n[[sla.calendars]]\nname = "x"\nholidays = "XX"\n', r"sla\.calendars\[2\]\.holidays"),
        (
            '\n[[sla.calendars]]\nname = "x"\nclosed = ["31.12."]\n',
            r"sla\.calendars\[2\]\.closed\[0\]",
        ),
    ],
)
def test_wrong_values_are_startup_errors_naming_the_key(
    tmp_path: Path, extra: str, key: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: "):
        load_settings(str(example_config(tmp_path, extra)), environ={})


def test_an_escalation_group_without_agents_is_a_warning_not_an_error(tmp_path: Path) -> None:
    """SPEC's own example escalates to "L2" with only an "L1" agent: it must start."""
    extra = '\n[[sla.policies]]\nname = "x"\ncalendar = "office"\nescalate_to = "L9"\n'
    settings = load_settings(str(example_config(tmp_path, extra)), environ={})
    assert build_rules(settings).policies[-1].escalate_to == "L9"
    assert unstaffed_escalations(settings) == [
        "sla.policies[5].escalate_to: no agent is in group 'L9' yet; its breach mail goes to"
        " the assignee and the ticket's group only"
    ]
