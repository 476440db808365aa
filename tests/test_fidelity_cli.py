"""The first hour of a new user and stored mail that must not vanish (issue 9)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from postdesk.daemon.steps.dedupe import dedupe_key
from postdesk.models.schema import Message
from tests.support import Daemon, make_mail, write_config


@pytest.fixture
def offline(tmp_path: Path, sqlite_url: str) -> Iterator[Daemon]:
    """A configured data dir whose daemon is not running."""
    daemon = Daemon(write_config(tmp_path, sqlite_url), tmp_path)
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
