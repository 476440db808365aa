"""The first hour of a new user and stored mail that must not vanish (issue 9)."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from postdesk.daemon.config import Agent, ImapMailbox, Settings
from postdesk.daemon.steps.dedupe import dedupe_key
from postdesk.models.schema import Message
from tests.support import Daemon, free_port, make_mail, write_config


@pytest.fixture
def offline(tmp_path: Path, database_url: str) -> Iterator[Daemon]:
    """A configured data dir whose daemon is not running (SQLite and PostgreSQL)."""
    daemon = Daemon(write_config(tmp_path, database_url), tmp_path)
    yield daemon
    daemon.stop()


def write(folder: Path, name: str, raw: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(raw)
    return folder / name


# --- item 7: the sender is part of the dedupe key ----------------------------------------------


def test_same_message_id_and_body_from_two_senders_is_stored_twice(
    offline: Daemon, tmp_path: Path
) -> None:
    mails = tmp_path / "mails"
    carol = make_mail(message_id="<template@example.org>", sender="carol@example.org")
    dave = make_mail(message_id="<template@example.org>", sender="dave@example.org")
    paths = [write(mails, "c.eml", carol), write(mails, "d.eml", dave), mails / "c.eml"]
    result = offline.cli("ingest", *map(str, paths))
    assert "ingested 3 message(s): 2 stored (2 new tickets), 1 duplicate" in result.stdout
    assert sorted(t["requester"] for t in offline.tickets()) == [
        "carol@example.org",
        "dave@example.org",
    ]


def test_dedupe_key_ignores_trace_headers_but_not_the_sender() -> None:
    raw = make_mail(message_id="<m@example.org>")
    relayed = b"Received: from mx.example.org by imap.example.com; now\r\n" + raw
    assert dedupe_key("carol@example.org", "<m@example.org>", relayed) == dedupe_key(
        "Carol@Example.org", "<m@example.org>", raw
    )
    assert dedupe_key("dave@example.org", "<m@example.org>", raw) != dedupe_key(
        "carol@example.org", "<m@example.org>", raw
    )


def test_messages_stored_with_the_old_key_still_dedupe(offline: Daemon, tmp_path: Path) -> None:
    raw = make_mail(message_id="<old@example.org>")
    path = write(tmp_path / "mails", "a.eml", raw)
    offline.cli("ingest", str(path))
    with offline._factory() as session, session.begin():  # as a release before issue 9 stored it
        session.execute(
            update(Message)
            .where(Message.direction == "in")
            .values(dedupe_key=dedupe_key(None, "<old@example.org>", raw))
        )
    assert "1 duplicate" in offline.cli("ingest", str(path)).stdout


# --- item 10: the example config shows the real defaults ---------------------------------------

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "postdesk.example.toml"


def _commented_table(text: str, header: str) -> dict[str, Any]:
    """The keys of a commented-out ``# [[header]]`` block, read as TOML."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"# {header}"))
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith("# ") or not line[2:3].isalpha():
            break
        body.append(line[2:])
    return tomllib.loads("\n".join(body))


def _as_config(value: Any) -> Any:
    """A dataclass default as TOML would write it (tuples are lists)."""
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("section", ["[[imap]]", "[[agents]]", "tables"])
def test_example_config_shows_every_key_with_its_real_default(section: str) -> None:
    text = EXAMPLE.read_text()
    if section == "tables":
        data = tomllib.loads(text)
        defaults: dict[str, Any] = {
            f.name: getattr(Settings(), f.name)
            for f in dataclasses.fields(Settings)
            if f.name not in ("imap", "agents", "source")
        }
    else:
        block = _commented_table(text, section)
        default = ImapMailbox() if section == "[[imap]]" else Agent(email=block["email"])
        data, defaults = {section: block}, {section: default}
    assert set(data) == set(defaults)
    for name, table in data.items():
        expected = {
            f.name: _as_config(getattr(defaults[name], f.name))
            for f in dataclasses.fields(defaults[name])
            if f"# [[{name}.{f.name}]]" not in text  # arrays of tables: a commented example
        }
        if name == "plugins":  # [plugins.<name>] tables: each plugin's own settings ("options")
            table = {key: value for key, value in table.items() if not isinstance(value, dict)}
            expected.pop("options")
        assert table == expected, name


# --- items 5 and 10: what `ticket`, `tickets` and `quarantine` show ----------------------------

REPLY = "Thanks, that fixed it.\n\nOn Mon, 1 Jan 2024 at 10:00, Support <support@example.com> wrote:\n> Try turning it off.\n"


def test_ticket_shows_new_text_and_utc_timestamps(offline: Daemon, tmp_path: Path) -> None:
    path = write(tmp_path / "mails", "a.eml", make_mail(body=REPLY))
    offline.cli("ingest", str(path))
    data = json.loads(offline.cli("ticket", "1", "--json").stdout)
    message = data["messages"][0]
    assert message["new_text"] == "Thanks, that fixed it."
    assert "Try turning it off" in message["text"]
    stamps = [data["created_at"], data["updated_at"], message["created_at"]]
    assert all(stamp.endswith("+00:00") for stamp in stamps), stamps
    assert datetime.fromisoformat(data["updated_at"]) >= datetime.fromisoformat(data["created_at"])
    listed = json.loads(offline.cli("tickets", "--json").stdout)[0]
    assert listed["created_at"].endswith("+00:00")
    shown = offline.cli("ticket", "1").stdout
    assert "Thanks, that fixed it." in shown and "Try turning it off" not in shown
    assert "see --json" in shown


def test_quarantine_lists_from_and_subject(offline: Daemon, tmp_path: Path) -> None:
    held = b"From: a@example.com\nFrom: b@example.com\nSubject: =?utf-8?q?Caf=C3=A9?=\n\nx\n"
    offline.cli("ingest", str(write(tmp_path / "mails", "two-from.eml", held)))
    rows = json.loads(offline.cli("quarantine", "--json").stdout)
    assert [(r["from"], r["subject"]) for r in rows] == [("a@example.com", "Café")]
    assert rows[0]["created_at"].endswith("+00:00")
    listing = offline.cli("quarantine").stdout
    assert "a@example.com" in listing and "Café" in listing and "sender" in listing


def test_misdirected_reply_is_acknowledged_under_its_bare_subject(
    tmp_path: Path, database_url: str
) -> None:
    # the subject is echoed to verified senders only: both pass SPF at our trusted MX
    auth = '[auth]\ntrusted_authserv_ids = ["mx.example.org"]\n'
    offline = Daemon(write_config(tmp_path, database_url, extra=auth), tmp_path)
    spf = {"Authentication-Results": "mx.example.org; spf=pass smtp.mailfrom=x@example.org"}
    mails = tmp_path / "mails"
    first = write(mails, "a.eml", make_mail(subject="Printer on fire", headers=spf))
    stranger = make_mail(
        subject="Re: RE: [Example #1] Printer on fire", sender="dave@example.org", headers=spf
    )
    try:
        offline.cli("ingest", str(first), str(write(mails, "b.eml", stranger)))
        subjects = [
            str(email.message_from_bytes(row.raw, policy=email.policy.default)["subject"])
            for row in offline.outbox()
        ]
    finally:
        offline.stop()  # disposes of the test's own database connections
    assert subjects == ["[Example #1] Re: Printer on fire", "[Example #2] Re: Printer on fire"]


def test_version_and_license() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == f"postdesk {importlib.metadata.version('postdesk')}"
    license_text = (Path(__file__).resolve().parents[1] / "LICENSE").read_text()
    assert license_text.startswith("MIT License")


# --- item 9: configuration errors name their key, from check and from serve, exit 2 -------------


def _run(config: Path, command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), command],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("change", "key", "hint"),
    [
        (("database = ", 'database = "notaurl"\n#'), "helpdesk.database", "sqlite:///"),
        (
            ("database = ", 'database = "postgres://u@127.0.0.1/x"\n#'),
            "helpdesk.database",
            "psycopg",
        ),
        (
            ("database = ", 'database = "mysql://u@127.0.0.1/x"\n#'),
            "helpdesk.database",
            "sqlite:///",
        ),
        (("listen = ", 'listen = "127.0.0.1:99999"\n#'), "smtp.listen", "65535"),
        (("data_dir = ", 'data_dir = "{blocker}/data"\n#'), "helpdesk.data_dir", "cannot create"),
    ],
)
@pytest.mark.parametrize("command", ["check", "serve"])
def test_config_errors_name_their_key_and_exit_2(
    tmp_path: Path, sqlite_url: str, command: str, change: tuple[str, str], key: str, hint: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = write_config(tmp_path, sqlite_url)
    old, new = change
    config.write_text(config.read_text().replace(old, new.format(blocker=blocker), 1))
    result = _run(config, command, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert key in output and hint in output and "Traceback" not in output, output
    if command == "serve":
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("command", ["check", "serve"])
def test_smtp_port_in_use_is_named_before_the_database_is_touched(
    tmp_path: Path, command: str
) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db' / 'postdesk.db'}")
    listen = tomllib.loads(config.read_text())["smtp"]["listen"]
    host, port = listen.rsplit(":", 1)
    with socket.create_server((host, int(port))):
        result = _run(config, command, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "smtp.listen" in output and "in use" in output, output
    if command == "serve":
        assert not (tmp_path / "db" / "postdesk.db").exists(), "migrated before failing"


# --- item 8: ingest while serve runs -----------------------------------------------------------


def test_ingest_while_serve_runs_accounts_for_every_message(
    tmp_path: Path, sqlite_url: str
) -> None:
    daemon = Daemon(write_config(tmp_path, sqlite_url), tmp_path)
    daemon.start()
    try:
        mails = tmp_path / "mails"
        for n in range(30):
            write(mails, f"{n:02}.eml", make_mail(subject=f"mail {n}", sender=f"u{n}@example.org"))
        result = daemon.cli("ingest", str(mails), check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "spooled 30 message(s) for the running postdesk serve, which processed 30." in (
            result.stdout
        ), result.stdout
        assert len(daemon.tickets()) == 30
    finally:
        assert daemon.stop() == 0


# --- item 11: the README walkthrough works when followed literally ---------------------------


@pytest.mark.slow
def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Trying it", 1)[1]
    script = section.split("```sh\n", 1)[1].split("```", 1)[0]
    port = free_port()  # the walkthrough's 2525 may be taken on a shared machine
    script = script.replace("2525", str(port))
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "postdesk").symlink_to(Path(sys.executable).parent / "postdesk")
    env = {**os.environ, "POSTDESK_SMTP_LISTEN": f"127.0.0.1:{port}"}
    env.pop("POSTDESK_CONFIG", None)
    result = subprocess.run(
        ["bash", "-e", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        start_new_session=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[Support #1]" in result.stdout and "Printer on fire" in result.stdout
    (ack,) = (tmp_path / "postdesk-data" / "outbox-sent" / "new").iterdir()
    assert b"[Support #1]" in ack.read_bytes()
    assert "postdesk stopped" in result.stderr  # `kill %1` stopped the daemon gracefully
