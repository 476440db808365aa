"""A new ticket's mails go into the outbox together, and nothing is read that can be known."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, select

from postdesk.daemon.config import load_settings
from postdesk.daemon.intake.spool import Envelope
from postdesk.daemon.runtime import Runtime, open_runtime
from postdesk.daemon.worker import DatabaseHealth, Worker
from postdesk.models.schema import Message, OutboxItem
from tests.support import make_mail, write_config

AGENTS = """
[[agents]]
email = "alice@example.com"

[[agents]]
email = "bob@example.com"
"""


@pytest.fixture
def runtime(tmp_path: Path, database_url: str) -> Iterator[Runtime]:
    """A daemon's runtime with two agents."""
    opened = open_runtime(
        load_settings(str(write_config(tmp_path, database_url, extra=AGENTS)), environ={})
    )
    yield opened
    opened.engine.dispose()


def test_a_new_ticket_writes_its_three_mails_in_one_statement_per_table(
    runtime: Runtime,
) -> None:
    raw = make_mail(subject="Printer on fire", to="support@localhost")
    envelope = Envelope("carol@example.org", ("support@localhost",), "smtp", time.time())
    runtime.spool.write(raw, envelope)
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(" ".join(str(args[2]).split()))

    event.listen(runtime.engine, "before_cursor_execute", record)
    [outcome] = Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth()).drain()
    event.remove(runtime.engine, "before_cursor_execute", record)
    assert outcome.disposition == "stored" and outcome.created
    assert len([s for s in statements if s.startswith("INSERT INTO outbox")]) == 1
    outgoing = [
        s for s in statements if s.startswith("INSERT INTO messages") and "RETURNING" not in s
    ]
    assert len(outgoing) == 1  # the inbound message is the one written with RETURNING
    assert not [s for s in statements if "FROM participants" in s]  # a new ticket has no assistants
    with runtime.factory() as session:
        kinds = session.scalars(select(OutboxItem.kind).order_by(OutboxItem.id)).all()
        recipients = session.scalars(select(OutboxItem.recipient).order_by(OutboxItem.id)).all()
        copies = session.scalars(select(Message.direction).where(Message.direction == "out")).all()
    assert kinds == ["acknowledgement", "notification", "notification"]
    assert recipients == ["carol@example.org", "alice@example.com", "bob@example.com"]
    assert len(copies) == 3
