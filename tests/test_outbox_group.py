"""Several mails about one ticket queued together: one INSERT per table, caps still exact."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import event, select

from postdesk.daemon.config import Agent
from postdesk.daemon.outbound.outbox import Mail, enqueue_all
from postdesk.daemon.outbound.templating import CUSTOMER_ACKNOWLEDGEMENT
from postdesk.daemon.store.db import transaction
from postdesk.models.schema import Message, Ticket, utcnow
from tests.test_outbox_sender import CUSTOMER, Env, env, outbox

__all__ = ["env"]  # the fixture, shared with the sender's tests

AGENTS = ("alice@example.com", "bob@example.com", "carol@example.com")


def mail(to: str, auto: bool = True) -> Mail:
    """An acknowledgement-like mail to ``to`` about ticket 1."""
    context = {
        "helpdesk": {"name": "Example Support", "address": "support@example.com"},
        "ticket": {"number": 1, "subject": "Printer", "tag": "[Example #1]"},
    }
    return Mail(
        kind="notification",
        to=[to],
        template=CUSTOMER_ACKNOWLEDGEMENT,
        context=context,
        in_reply_to="<in-1@example.org>",
        references=[],
        auto=auto,
        agent=to,
        internal_copy=True,
    )


def with_agents(env: Env) -> Env:
    """``env`` with the three agents configured (mail to them is exempt from the caps)."""
    settings = dataclasses.replace(env.settings, agents=tuple(Agent(email=e) for e in AGENTS))
    return dataclasses.replace(env, services=dataclasses.replace(env.services, settings=settings))


def test_mails_to_agents_are_written_in_one_statement_per_table(env: Env) -> None:
    env = with_agents(env)
    statements: list[str] = []
    with transaction(env.factory) as session:
        ticket = Ticket(number=1, subject="Printer", requester=CUSTOMER)
        session.add(ticket)
        session.flush()

        def count(*args: object) -> None:
            statements.append(str(args[2]))

        event.listen(env.engine, "before_cursor_execute", count)
        try:
            queued = enqueue_all(session, env.services, ticket, [mail(a) for a in AGENTS])
            ids = [q.id if q is not None else None for q in queued]
        finally:
            event.remove(env.engine, "before_cursor_execute", count)
    inserts = [s.split("(")[0].strip() for s in statements if s.startswith("INSERT")]
    assert inserts == ["INSERT INTO messages", "INSERT INTO outbox"]  # the copies keep the bytes
    rows = {row.id: row for row in outbox(env)}
    assert sorted(rows) == sorted(i for i in ids if i is not None)
    assert [rows[i].recipient for i in ids if i is not None] == list(AGENTS)  # each its own id
    with env.factory() as session:
        copies = session.execute(
            select(Message.message_id, Message.raw).where(Message.direction == "out")
        )
        assert sorted(copies) == sorted((row.message_id, row.raw) for row in rows.values())
    assert all(row.stored_raw == b"" and row.message_pk for row in rows.values())  # kept once


def test_a_capped_outside_address_counts_the_mails_queued_before_it(env: Env) -> None:
    env = env.outbound(auto_per_recipient_10min=1)
    with transaction(env.factory) as session:
        ticket = Ticket(number=1, subject="Printer", requester=CUSTOMER)
        session.add(ticket)
        session.flush()
        first, second = enqueue_all(session, env.services, ticket, [mail(CUSTOMER)] * 2)
    assert first is not None and second is None
    assert [(row.id, row.message_id) for row in outbox(env)] == [first]


def _queue_one(env: Env, number: int, to: str) -> bool:
    """Queue an automatic mail to ``to`` about ticket ``number`` in its own transaction;
    whether it was queued (not refused by a cap)."""
    with transaction(env.factory) as session:
        ticket = Ticket(number=number, subject="Printer", requester=to)
        session.add(ticket)
        session.flush()
        [queued] = enqueue_all(session, env.services, ticket, [mail(to)])
    return queued is not None


def test_the_hourly_total_is_counted_once_a_second_and_still_caps_exactly(env: Env) -> None:
    env = env.outbound(auto_total_per_hour=3)
    hourly: list[str] = []  # the counts of the whole hour (not those of one recipient)

    def count(*args: object) -> None:
        statement = str(args[2])
        if "count(*)" in statement and "outbox.recipient = " not in statement:
            hourly.append(statement)

    event.listen(env.engine, "before_cursor_execute", count)
    try:
        queued = [_queue_one(env, n, f"victim{n}@example.org") for n in range(1, 6)]
    finally:
        event.remove(env.engine, "before_cursor_execute", count)
    assert queued == [True, True, True, False, False]  # the mails of earlier transactions count
    assert 1 <= len(hourly) < 5  # counted again only at the cap, not in every transaction


def test_the_hourly_total_is_counted_again_when_the_clock_moves_on(env: Env) -> None:
    env = env.outbound(auto_total_per_hour=2)
    start = utcnow()
    now = [start]
    env = dataclasses.replace(env, services=dataclasses.replace(env.services, clock=lambda: now[0]))
    assert [_queue_one(env, n, f"victim{n}@example.org") for n in (1, 2, 3)] == [True, True, False]
    now[0] = start + timedelta(hours=1, seconds=1)  # the first two left the hour
    assert _queue_one(env, 4, "victim4@example.org")
