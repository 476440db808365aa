"""The caps' figures of a new ticket's sender, read by the dedupe statement, stand in for the
caps' own read of the acknowledgement's recipient only while they are current."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from postdesk.daemon.config import load_settings
from postdesk.daemon.intake.spool import Envelope
from postdesk.daemon.outbound import caps
from postdesk.daemon.outbound.outbox import enqueue_all
from postdesk.daemon.runtime import Runtime, open_runtime
from postdesk.daemon.store.bounces import changes_seen
from postdesk.daemon.store.db import transaction
from postdesk.daemon.worker import DatabaseHealth, Worker
from postdesk.models.schema import OutboxItem, Ticket
from tests.support import make_mail, write_config
from tests.test_outbox_group import mail
from tests.test_outbox_sender import CUSTOMER, Env, env

__all__ = ["env"]

CAPPED = """auto_per_recipient_10min = 2

[processing]
batch_size = 20
batch_ms = 100000
"""


@pytest.fixture
def runtime(tmp_path: Path, database_url: str) -> Iterator[Runtime]:
    """A daemon's runtime whose customers get at most two automatic mails in 10 minutes, and
    whose worker commits up to 20 messages together."""
    opened = open_runtime(
        load_settings(str(write_config(tmp_path, database_url, extra=CAPPED)), environ={})
    )
    yield opened
    opened.engine.dispose()


def test_the_acknowledgements_of_one_batch_stop_at_the_cap(runtime: Runtime) -> None:
    """Each message's dedupe statement reads the sender's figures after the earlier messages
    of the batch queued their acknowledgements: the third ticket is not acknowledged."""
    for number in range(3):
        raw = make_mail(subject=f"Printer {number}", message_id=f"<cap-{number}@example.org>")
        envelope = Envelope(CUSTOMER, ("support@example.com",), "smtp", time.time())
        runtime.spool.write(raw, envelope)
    worker = Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth())
    outcomes = worker.drain()
    assert [outcome.disposition for outcome in outcomes] == ["stored"] * 3
    assert len({outcome.ticket for outcome in outcomes}) == 3
    with runtime.factory() as session:
        acknowledged = session.scalars(
            select(OutboxItem.ticket_id).where(OutboxItem.recipient == CUSTOMER)
        ).all()
        tickets = session.scalars(select(Ticket.id).order_by(Ticket.id)).all()
    assert sorted(acknowledged) == tickets[:2]


def _caps_reads(env: Env) -> list[str]:
    """The caps' reads of a recipient's figures run on ``env``'s engine from now on."""
    reads: list[str] = []

    def record(*args: object) -> None:
        if "outbox.recipient = " in str(args[2]):
            reads.append(str(args[2]))

    event.listen(env.engine, "before_cursor_execute", record)
    return reads


def _ticket_and_figures(session: Session) -> tuple[Ticket, caps.Counted]:
    """A new ticket of CUSTOMER's, and the caps' figures of CUSTOMER as read at that point."""
    ticket = Ticket(number=1, subject="Printer", requester=CUSTOMER)
    session.add(ticket)
    session.flush()
    return ticket, caps.Counted(CUSTOMER, None, 0, 0, changes_seen(session.connection()))


def test_current_figures_are_not_read_again(env: Env) -> None:
    env = env.outbound(auto_per_recipient_10min=1)
    reads = _caps_reads(env)
    with transaction(env.factory) as session:
        ticket, counted = _ticket_and_figures(session)
        [queued] = enqueue_all(
            session, env.services, ticket, [dataclasses.replace(mail(CUSTOMER), counted=counted)]
        )
    assert queued is not None and reads == []


def test_figures_read_before_a_mail_was_queued_are_read_again(env: Env) -> None:
    env = env.outbound(auto_per_recipient_10min=1)
    reads = _caps_reads(env)
    with transaction(env.factory) as session:
        ticket, counted = _ticket_and_figures(session)
        [first] = enqueue_all(session, env.services, ticket, [mail(CUSTOMER)])
        later = dataclasses.replace(mail(CUSTOMER), counted=counted)
        [second] = enqueue_all(session, env.services, ticket, [later])
    assert first is not None and second is None  # the cap of one, read again, refuses it
    assert len(reads) == 2


def test_figures_of_another_address_are_not_used(env: Env) -> None:
    env = env.outbound(auto_per_recipient_10min=1)
    with transaction(env.factory) as session:
        ticket = Ticket(number=1, subject="Printer", requester=CUSTOMER)
        session.add(ticket)
        session.flush()
        [first] = enqueue_all(session, env.services, ticket, [mail(CUSTOMER)])
        other = caps.Counted("dave@example.org", None, 0, 0, changes_seen(session.connection()))
        [second] = enqueue_all(
            session, env.services, ticket, [dataclasses.replace(mail(CUSTOMER), counted=other)]
        )
    assert first is not None and second is None
