"""A new ticket's mails go into the outbox together, and nothing is read that can be known."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from postdesk.daemon.classify import features, model, persist
from postdesk.daemon.classify.loader import model_path
from postdesk.daemon.config import load_settings
from postdesk.daemon.intake.spool import Envelope
from postdesk.daemon.mail.parse import parse_message
from postdesk.daemon.runtime import Runtime, open_runtime
from postdesk.daemon.worker import DatabaseHealth, Worker
from postdesk.models.schema import Event, Message, OutboxItem, Ticket
from tests.classifymail import ham_mail, spam_mail
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
        kept = session.execute(
            select(OutboxItem.stored_raw, OutboxItem.raw, Message.raw).join(
                Message, Message.id == OutboxItem.message_pk
            )
        ).all()
    assert kinds == ["acknowledgement", "notification", "notification"]
    assert recipients == ["carol@example.org", "alice@example.com", "bob@example.com"]
    assert len(copies) == 3
    # each mail's bytes are written once, in the ticket's copy, and read from there
    assert len(kept) == 3
    assert all(
        stored == b"" and raw == copy and b"Message-ID: " in raw for stored, raw, copy in kept
    )


def drain_recording(runtime: Runtime, raw: bytes, sender: str) -> tuple[list[str], int]:
    """Spool and process ``raw``: the SQL statements run and the number of ORM flushes."""
    runtime.spool.write(raw, Envelope(sender, ("support@localhost",), "smtp", time.time()))
    statements: list[str] = []
    flushes: list[object] = []

    def record(*args: object) -> None:
        statements.append(" ".join(str(args[2]).split()))

    def flushing(*args: object) -> None:
        flushes.append(args)

    event.listen(runtime.engine, "before_cursor_execute", record)
    event.listen(Session, "before_flush", flushing)
    try:
        [outcome] = Worker(
            runtime.services, runtime.factory, runtime.spool, DatabaseHealth()
        ).drain()
    finally:
        event.remove(runtime.engine, "before_cursor_execute", record)
        event.remove(Session, "before_flush", flushing)
    assert outcome.disposition == "stored" and outcome.created
    return statements, len(flushes)


def test_a_new_ticket_is_written_without_an_orm_flush(runtime: Runtime) -> None:
    first = make_mail(subject="First", sender="dave@example.org", to="support@localhost")
    drain_recording(runtime, first, "dave@example.org")  # creates the ticket number counter
    raw = make_mail(subject="Printer on fire", to="support@localhost")
    statements, flushes = drain_recording(runtime, raw, "carol@example.org")
    assert flushes == 0  # nothing written at once is set again to the value it has
    assert not [s for s in statements if s.startswith("UPDATE tickets")]
    start = next(i for i, s in enumerate(statements) if s.startswith("SAVEPOINT")) + 1
    released = [i for i, s in enumerate(statements) if s.startswith("RELEASE SAVEPOINT")]
    postgres = runtime.engine.dialect.name == "postgresql"
    # PostgreSQL leaves the message's savepoint open: it goes with the commit (store/db.py)
    assert len(released) == (0 if postgres else 1)
    inside = statements[start : released[0] if released else None]
    # dedupe (with the sender's recent tickets and the caps' figures of the sender, which the
    # acknowledgement then needs not read again), contact, ticket number (PostgreSQL: taken by
    # the ticket's INSERT), ticket, participant, message, events, SLA, outbox rows, outgoing
    # messages; and the hourly total of automatic mail, counted at most once a second
    # (outbound/caps.py): the first message counted it, so it runs here only when a second has
    # passed since
    hourly = [s for s in inside if "FROM outbox" in s and "outbox.recipient = " not in s]
    assert len(inside) - len(hourly) == (9 if postgres else 10) and len(hourly) <= 1
    assert len([s for s in inside if "outbox.recipient = " in s]) == 1  # in the dedupe SELECT


def test_a_spam_ticket_is_written_closed_with_its_verdict_in_the_same_statements(
    runtime: Runtime,
) -> None:
    samples = [features.from_message(parse_message(ham_mail(n))) for n in range(40)]
    samples += [features.from_message(parse_message(spam_mail(n))) for n in range(30)]
    trained = model.train_spam(samples, ["ham"] * 40 + ["spam"] * 30, target_fpr=0.0)
    persist.save(trained, model_path(runtime.services.settings.data_dir, "spam"))
    statements, flushes = drain_recording(runtime, spam_mail(101), "spam@example.net")
    assert flushes == 0
    assert not [s for s in statements if s.startswith("UPDATE tickets")]
    assert len([s for s in statements if s.startswith("INSERT INTO events")]) == 1
    with runtime.factory() as session:
        ticket = session.scalars(select(Ticket)).one()
        kinds = session.scalars(select(Event.kind).order_by(Event.id)).all()
        actors = session.scalars(select(Event.actor).order_by(Event.id)).all()
    assert ticket.spam and ticket.status == "closed" and ticket.status_label == "closed"
    assert ticket.spam_score is not None and ticket.spam_score > 0.5
    assert kinds == ["created", "received", "classified", "spam"]
    assert actors[2:] == ["postdesk", "postdesk"] and actors[0] == actors[1] != "postdesk"
