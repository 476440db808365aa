"""``postdesk report``: figures against the hand-computed fixture of tests/reportdata.py, on
SQLite and PostgreSQL, through the real command line (text, JSON and HTML)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.reportdata import AGENTS_TOML, ALICE, BOB, SLA_TOML, build_fixture
from tests.support import write_config

RANGE = ("--from", "2026-10-19", "--to", "2026-11-01")


def postdesk(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point."""
    return subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=config.parent,
    )


@pytest.fixture
def fixture_config(tmp_path: Path, database_url: str) -> Path:
    """A config for the fixture database, reporting in Europe/Berlin."""
    build_fixture(database_url)
    return write_config(tmp_path, database_url, extra=AGENTS_TOML + SLA_TOML)


def report_json(config: Path, *args: str) -> dict[str, Any]:
    """``postdesk report --json`` parsed."""
    result = postdesk(config, "report", *RANGE, "--json", *args)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_volume_by_week_across_the_dst_change(fixture_config: Path) -> None:
    report = report_json(fixture_config, "--by", "week")
    assert report["window"] == {
        "from": "2026-10-19",
        "to": "2026-11-01",
        "timezone": "Europe/Berlin",
        "by": "week",
        "start": "2026-10-18T22:00:00Z",  # midnight CEST
        "end": "2026-11-01T23:00:00Z",  # midnight CET
    }
    volume = report["volume"]
    assert [(p["period"], p["created"], p["reopened"], p["solved"]) for p in volume["periods"]] == [
        ("2026-W43", 3, 0, 2),
        ("2026-W44", 2, 1, 1),
    ]
    assert volume["periods"][1]["start"] == "2026-10-25T23:00:00Z"
    assert volume["totals"] == {"created": 5, "reopened": 1, "solved": 3}
    assert volume["by_category"] == {"billing": 3, "shipping": 2}
    assert volume["by_channel"] == {"imap:main": 1, "ingest": 1, "smtp": 3}


def test_days_are_local_days(fixture_config: Path) -> None:
    periods = {
        p["period"]: p for p in report_json(fixture_config, "--by", "day")["volume"]["periods"]
    }
    assert len(periods) == 14
    # Ticket 1 came at 00:30 CEST on Oct 25 (22:30Z on Oct 24): a local Oct 25 ticket.
    assert periods["2026-10-24"]["created"] == 0
    assert periods["2026-10-25"]["created"] == 1
    assert periods["2026-10-25"]["start"] == "2026-10-24T22:00:00Z"
    assert periods["2026-10-26"]["start"] == "2026-10-25T23:00:00Z"  # a 25-hour day


def test_speed_in_wall_time(fixture_config: Path) -> None:
    speed = report_json(fixture_config)["speed"]
    first = speed["first_response"]
    # Replies after 1 h (T2), 2 h (T7), 4 h (T1: 3 h on the local clock, across the change)
    # and 24 h (T4); nearest-rank median is the 2nd of 4, p90 the 4th.
    assert first["overall"] == {"count": 4, "mean": 27900.0, "median": 7200.0, "p90": 86400.0}
    assert first["unanswered"] == 1
    assert first["by_agent"] == [
        {"key": ALICE, "count": 2, "mean": 50400.0, "median": 14400.0, "p90": 86400.0},
        {"key": BOB, "count": 2, "mean": 5400.0, "median": 3600.0, "p90": 7200.0},
    ]
    assert first["by_category"] == [
        {"key": "billing", "count": 3, "mean": 8400.0, "median": 7200.0, "p90": 14400.0},
        {"key": "shipping", "count": 1, "mean": 86400.0, "median": 86400.0, "p90": 86400.0},
    ]
    assert [b["count"] for b in first["histogram"]] == [0, 2, 1, 0, 1, 0, 0]
    resolution = speed["resolution"]
    assert resolution["overall"] == {
        "count": 2,
        "mean": 110700.0,
        "median": 48600.0,
        "p90": 172800.0,
    }
    assert resolution["by_agent"] == [
        {"key": ALICE, "count": 2, "mean": 110700.0, "median": 48600.0, "p90": 172800.0}
    ]
    assert [r["key"] for r in resolution["by_category"]] == ["billing", "shipping"]
    assert [b["count"] for b in resolution["histogram"]] == [0, 0, 0, 1, 1, 0, 0]


def test_satisfaction_backlog_and_spam(fixture_config: Path) -> None:
    report = report_json(fixture_config)
    sat = report["satisfaction"]
    assert sat["rated"] == 2 and sat["requested"] == 3 and sat["answered"] == 2
    assert sat["response_rate"] == 0.667
    assert sat["average"] == 3.5
    assert [d["count"] for d in sat["distribution"]] == [0, 1, 0, 0, 1]
    assert sat["by_agent"] == [{"key": ALICE, "count": 2, "average": 3.5}]
    assert sat["by_category"] == [
        {"key": "billing", "count": 1, "average": 5.0},
        {"key": "shipping", "count": 1, "average": 2.0},
    ]
    backlog = report["backlog"]
    assert backlog["open"] == 4
    assert [b["count"] for b in backlog["by_age"]] == [0, 0, 1, 2, 1]
    assert backlog["by_assignee"] == {"": 1, BOB: 3}
    assert report["spam"] == {
        "spam_tickets": 1,
        "marked_spam": 1,
        "quarantined": 2,
        "quarantined_by_state": {"held": 1, "replayed": 1},
        "held_now": 2,
    }


def test_text_tables_carry_the_figures(fixture_config: Path) -> None:
    result = postdesk(fixture_config, "report", *RANGE)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "2026-W43        3         0       2" in text
    assert "first response        4   2h 00m  1d 0h  7h 45m" in text
    assert "resolution            2  13h 30m  2d 0h   1d 6h" in text
    assert "response rate: 67%" in text
    assert f"{BOB}        3" in text
    assert "routine  first response        3    2         1        0     0         67%" in text
    assert "total        resolution        5    1         1        1     2         50%" in text
    assert "all policies        4  2h 00m   1d 0h   7h 30m" in text


def test_bad_dates_are_one_line_usage_errors(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path, sqlite_url)
    for args, expected in (
        (("--from", "2026-13-01"), "not a date (expected YYYY-MM-DD): '2026-13-01'"),
        (
            ("--from", "2026-02-01", "--to", "2026-01-01"),
            "--from 2026-02-01 is after --to 2026-01-01",
        ),
    ):
        result = postdesk(config, "report", *args)
        assert result.returncode == 2
        assert result.stderr.strip() == f"postdesk report: {expected}"


def test_wrong_timezone_names_the_key(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path, sqlite_url, extra='[reports]\ntimezone = "Mars/Olympus"\n')
    result = postdesk(config, "report")
    assert result.returncode == 2
    assert "reports.timezone: not a known time zone" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sla_compliance_per_policy(fixture_config: Path) -> None:
    sla = report_json(fixture_config)["sla"]
    assert sla["as_of"] == "2026-11-01T23:00:00Z"  # the end of the range, long past
    assert sla["policies"] == [
        {
            "policy": "routine",
            "tickets": 3,
            "first_response": {
                "met": 2,
                "breached": 1,
                "at_risk": 0,
                "open": 0,
                "compliance": 0.667,
            },
            "resolution": {"met": 0, "breached": 0, "at_risk": 1, "open": 2, "compliance": None},
        },
        {
            "policy": "urgent",
            "tickets": 2,
            "first_response": {"met": 1, "breached": 1, "at_risk": 0, "open": 0, "compliance": 0.5},
            "resolution": {"met": 1, "breached": 1, "at_risk": 0, "open": 0, "compliance": 0.5},
        },
    ]
    assert sla["totals"] == {
        "tickets": 5,
        "first_response": {"met": 3, "breached": 2, "at_risk": 0, "open": 0, "compliance": 0.6},
        "resolution": {"met": 1, "breached": 1, "at_risk": 1, "open": 2, "compliance": 0.5},
    }


def test_sla_judged_as_of_a_shorter_range(fixture_config: Path) -> None:
    # Up to Oct 27 (end 23:00Z): T3 (created Oct 27 10:00Z) is not yet due but past its warning;
    # T4 is not created yet; T7 was solved only later; T2's resolution warning has not passed.
    result = postdesk(
        fixture_config, "report", "--from", "2026-10-19", "--to", "2026-10-27", "--json"
    )
    assert result.returncode == 0, result.stderr
    sla = json.loads(result.stdout)["sla"]
    routine = sla["policies"][0]
    assert routine["policy"] == "routine" and routine["tickets"] == 3
    assert routine["first_response"] == {
        "met": 2,
        "breached": 0,
        "at_risk": 1,
        "open": 0,
        "compliance": 1.0,
    }
    assert routine["resolution"] == {
        "met": 0,
        "breached": 0,
        "at_risk": 0,
        "open": 3,
        "compliance": None,
    }


def test_sla_times_in_business_time(fixture_config: Path) -> None:
    business = report_json(fixture_config)["sla"]["business_time"]
    # routine (Berlin, Mon-Fri 11:00-17:00): T2 came at 10:00 CEST and was answered at 11:00,
    # before opening: 0 s; T7 from 12:00 to 14:00 CEST on a Friday: 2 h. urgent (24x7): T1
    # 4 h across the DST change, T4 24 h.
    first = business["first_response"]
    assert first["by_policy"] == [
        {"key": "routine", "count": 2, "mean": 3600.0, "median": 0.0, "p90": 7200.0},
        {"key": "urgent", "count": 2, "mean": 50400.0, "median": 14400.0, "p90": 86400.0},
    ]
    assert first["overall"] == {"count": 4, "mean": 27000.0, "median": 7200.0, "p90": 86400.0}
    # Resolution: T1 13.5 h; T4 48 h less 12 h pending = 36 h. No routine ticket was resolved.
    resolution = business["resolution"]
    assert resolution["by_policy"] == [
        {"key": "urgent", "count": 2, "mean": 89100.0, "median": 48600.0, "p90": 129600.0}
    ]
    assert resolution["overall"] == {
        "count": 2,
        "mean": 89100.0,
        "median": 48600.0,
        "p90": 129600.0,
    }


def test_business_time_per_agent_and_category(fixture_config: Path) -> None:
    business = report_json(fixture_config)["sla"]["business_time"]
    # First response, by hand: T1 (Alice, billing, urgent 24x7) 00:30 CEST to 03:30 CET on the
    # night summer time ends: 4 h of working time though the wall clock moved 3 h; T4 (Alice,
    # shipping, urgent) 24 h; T2 (Bob, billing, routine) 10:00 to 11:00 CEST, before opening:
    # 0 s; T7 (Bob, billing, routine) 12:00 to 14:00 CEST on a Friday: 2 h.
    first = business["first_response"]
    assert first["by_agent"] == [
        {"key": ALICE, "count": 2, "mean": 50400.0, "median": 14400.0, "p90": 86400.0},
        {"key": BOB, "count": 2, "mean": 3600.0, "median": 0.0, "p90": 7200.0},
    ]
    # billing: 0, 2 h, 4 h; nearest-rank median the 2nd of 3, p90 the 3rd.
    assert first["by_category"] == [
        {"key": "billing", "count": 3, "mean": 7200.0, "median": 7200.0, "p90": 14400.0},
        {"key": "shipping", "count": 1, "mean": 86400.0, "median": 86400.0, "p90": 86400.0},
    ]
    # Resolution (assignee): T1 (Alice, billing) 13.5 h across the change; T4 (Alice, shipping)
    # 48 h less 12 h pending = 36 h. The wall-time figure for shipping is 48 h.
    resolution = business["resolution"]
    assert resolution["by_agent"] == [
        {"key": ALICE, "count": 2, "mean": 89100.0, "median": 48600.0, "p90": 129600.0}
    ]
    assert resolution["by_category"] == [
        {"key": "billing", "count": 1, "mean": 48600.0, "median": 48600.0, "p90": 48600.0},
        {"key": "shipping", "count": 1, "mean": 129600.0, "median": 129600.0, "p90": 129600.0},
    ]
    text = postdesk(fixture_config, "report", *RANGE).stdout
    agents = text.split("First response in business time by agent\n", 1)[1]
    assert agents.splitlines()[3].split() == [BOB, "2", "0m", "2h", "00m", "1h", "00m"]


def test_every_imap_mailbox_is_listed(tmp_path: Path, database_url: str) -> None:
    # "sales" is configured but nothing came in through it: it shows with 0, next to "main".
    build_fixture(database_url)
    mailboxes = "".join(
        f'\n[[imap]]\nname = "{name}"\nusername = "desk"\npassword = "x"\n'
        for name in ("main", "sales")
    )
    config = write_config(tmp_path, database_url, extra=AGENTS_TOML + SLA_TOML + mailboxes)
    result = postdesk(config, "report", *RANGE, "--json")
    assert result.returncode == 0, result.stderr
    by_channel = json.loads(result.stdout)["volume"]["by_channel"]
    assert by_channel == {"imap:main": 1, "imap:sales": 0, "ingest": 1, "smtp": 3}
    text = postdesk(config, "report", *RANGE).stdout
    assert "imap:sales        0" in text
