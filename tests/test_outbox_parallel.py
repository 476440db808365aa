"""The sender keeps pace: persistent relay connections used in parallel, leases kept.

Real aiosmtpd relays on loopback; the fixtures and helpers are those of test_outbox_sender.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import event

from postdesk.daemon.outbound.sender import OutboxSender
from tests.support import SmtpSink
from tests.test_outbox_sender import Env, drain, env, outbox, queue

__all__ = ["env"]


class CountingSink(SmtpSink):
    """A relay that also records which connection (client port) each mail came over."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[object] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Record the connection, then the mail."""
        self.peers.append(session.peer)
        return await super().handle_DATA(server, session, envelope)

    def restart(self) -> None:
        """Stop and listen again on the same port: every open connection is cut."""
        self.stop()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.start()


@pytest.fixture
def relay() -> Iterator[CountingSink]:
    """A counting relay, listening."""
    server = CountingSink()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_many_mails_over_few_persistent_connections(env: Env, relay: CountingSink) -> None:
    env = env.relay_to(relay.port).outbound(connections=3)
    for number in range(1, 41):
        queue(env, number=number, to=f"c{number}@example.org")
    assert drain(env) == 40
    ids = [msg["Message-ID"] for _envelope, msg in relay.received]
    assert len(ids) == len(set(ids)) == 40
    assert 1 <= len(set(relay.peers)) <= 3, "connections are reused, at most 3 at a time"
    rows = outbox(env)
    assert {row.status for row in rows} == {"sent"} and {row.attempts for row in rows} == {1}


def test_a_backlog_goes_out_in_few_write_transactions(env: Env) -> None:
    """Each write transaction may queue behind the worker's group commit (SQLite has one
    writer): 128 mails (4 connections x 32) are claimed at once, and recorded at once in the
    transaction that claims the next group."""
    for number in range(1, 129):
        queue(env, number=number, to=f"c{number}@example.org")
    transactions = 0

    def count(*_args: object) -> None:
        nonlocal transactions
        transactions += 1

    event.listen(env.engine, "begin", count)
    assert drain(env.outbound(connections=4)) == 128
    assert transactions == 2, "one claim, then the finish with the claim that finds nothing"
    assert {row.status for row in outbox(env)} == {"sent"}


def test_a_connection_the_relay_closed_is_replaced_without_a_failed_attempt(
    env: Env, relay: CountingSink
) -> None:
    env = env.relay_to(relay.port).outbound(connections=1)

    async def scenario() -> None:
        stop = asyncio.Event()
        sender = OutboxSender(env.settings, env.factory)
        task = asyncio.create_task(sender.run(stop))
        await asyncio.to_thread(queue, env, number=1)
        sender.wake()
        while len(relay.received) < 1:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(relay.restart)  # idle connections die
        await asyncio.to_thread(queue, env, number=2, to="dave@example.org")
        sender.wake()
        while len(relay.received) < 2:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(asyncio.wait_for(scenario(), timeout=20))
    rows = outbox(env)
    assert [row.status for row in rows] == ["sent", "sent"]
    assert [row.attempts for row in rows] == [1, 1], "the stale connection cost no attempt"


def test_rows_not_reached_when_stopping_are_released(env: Env, relay: CountingSink) -> None:
    env = env.relay_to(relay.port).outbound(connections=1)
    for number in range(1, 11):
        queue(env, number=number, to=f"c{number}@example.org")

    async def scenario() -> None:
        stop = asyncio.Event()
        sender = OutboxSender(env.settings, env.factory)
        task = asyncio.create_task(sender.run(stop))
        while not relay.received:
            await asyncio.sleep(0.001)
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(asyncio.wait_for(scenario(), timeout=20))
    rows = outbox(env)
    waiting = [row for row in rows if row.status == "pending"]
    assert waiting, "the sender stopped before the end of its claimed rows"
    assert all(row.claimed_until is None for row in waiting), "no lease left behind"
    assert len(relay.received) + len(waiting) == 10
    started = time.monotonic()
    assert drain(env) == len(waiting)  # another sender takes them at once
    assert time.monotonic() - started < 10
    assert len({msg["Message-ID"] for _e, msg in relay.received}) == 10
