"""The outbox rows' INSERT and the caps' query, run on the DBAPI cursor: rows and refusals as
before, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

from postdesk.daemon.config import Agent
from postdesk.daemon.outbound.outbox import enqueue_all
from postdesk.daemon.store.db import ROWS_PER_INSERT, transaction
from postdesk.models.schema import Contact, Message, Ticket
from tests.test_outbox_group import mail
from tests.test_outbox_sender import CUSTOMER, Env, env, outbox

__all__ = ["env"]  # the fixture, shared with the sender's tests


def new_ticket(env: Env, number: int, requester: str = CUSTOMER) -> Ticket:
    """A ticket committed on its own, to queue mail about."""
    with transaction(env.factory) as session:
        ticket = Ticket(number=number, subject="Printer", requester=requester)
        session.add(ticket)
    return ticket


def test_more_mails_than_one_insert_takes_are_all_queued_with_their_bytes(env: Env) -> None:
    agents = tuple(f"agent{i}@example.com" for i in range(ROWS_PER_INSERT * 2 + 3))
    settings = dataclasses.replace(env.settings, agents=tuple(Agent(email=e) for e in agents))
    env = dataclasses.replace(env, services=dataclasses.replace(env.services, settings=settings))
    with transaction(env.factory) as session:
        ticket = Ticket(number=1, subject="Printer", requester=CUSTOMER)
        session.add(ticket)
        session.flush()
        queued = enqueue_all(session, env.services, ticket, [mail(a) for a in agents])
    assert all(item is not None for item in queued)
    rows = outbox(env)
    assert [(row.id, row.message_id) for row in rows] == queued
    assert [row.recipient for row in rows] == list(agents)
    with env.factory() as session:
        copies = {pk: raw for pk, raw in session.execute(select(Message.id, Message.raw))}
    for row in rows:
        assert row.stored_raw == b"" and row.message_pk in copies
        assert row.raw == copies[row.message_pk] and row.message_id.encode() in row.raw
        assert row.status == "pending" and row.attempts == 0 and row.auto
    with env.factory() as session:  # as the driver has them: every row's times stored alike
        sql = "SELECT created_at, next_attempt_at FROM outbox UNION SELECT created_at, NULL FROM messages"
        assert len(set(session.connection().exec_driver_sql(sql).all())) == 2


def test_a_bouncing_address_is_refused_and_others_are_not(env: Env) -> None:
    bouncing, fine = "gone@example.org", "fine@example.org"
    with transaction(env.factory) as session:
        session.add_all([Contact(email=bouncing, bouncing=True), Contact(email=fine)])
    sent = []
    for number, to in enumerate([bouncing, fine, "unknown@example.org"], start=1):
        ticket = new_ticket(env, number, to)
        with transaction(env.factory) as session:
            ticket = session.merge(ticket)
            [queued] = enqueue_all(session, env.services, ticket, [mail(to)])
            sent.append(queued is not None)
    assert sent == [False, True, True]
    assert [row.recipient for row in outbox(env)] == [fine, "unknown@example.org"]


def test_the_daily_cap_counts_mail_of_earlier_transactions(env: Env) -> None:
    env = env.outbound(auto_per_recipient_day=2)
    sent = []
    for number in range(1, 4):
        ticket = new_ticket(env, number)
        with transaction(env.factory) as session:
            ticket = session.merge(ticket)
            [queued] = enqueue_all(session, env.services, ticket, [mail(CUSTOMER)])
            sent.append(queued is not None)
    assert sent == [True, True, False]
    assert len(outbox(env)) == 2
