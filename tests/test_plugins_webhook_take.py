"""Journaled webhook events taken into the webhook queue in the plugins process's own journal
transaction (``take_journaled``): one transaction claims the events, writes their queue rows
leased to the running deliveries and deletes the journal rows; the deliveries POST the rows
handed over without claiming them again. A take that fails rolls back and leaves the events
to the hooks (same ``event_id``); a receiver that fails gets the row again after its backoff."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

import pluggy
import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import Settings
from postdesk.daemon.store.db import make_engine, session_factory, transaction, upgrade_schema
from postdesk.models.plugin_events import PluginEvent
from postdesk.models.schema import utcnow
from postdesk.models.webhooks import WebhookDelivery
from postdesk.plugins import PROJECT, hookspecs, notify_webhook
from postdesk.plugins.facade import Hooks
from postdesk.plugins.host import PluginContext, PluginHost
from postdesk.plugins.httppool import HttpPool
from postdesk.plugins.journal import OwedCall
from postdesk.plugins.runner import PluginRunner
from postdesk.plugins.snapshots import freeze
from tests.httpstub import Receiver
from tests.support import wait_until

_ENGINES: list[Engine] = []


@pytest.fixture(autouse=True)
def _dispose() -> Iterator[None]:
    yield
    while _ENGINES:
        _ENGINES.pop().dispose()


def _runner(database_url: str, receiver: Receiver, **extra: Any) -> PluginRunner:
    """A runner with the real webhook plugin, writing and firing in this process's name (as
    the workers and the plugins process under serve do)."""
    engine = make_engine(database_url)
    _ENGINES.append(engine)
    upgrade_schema(engine)
    options = {"urls": [f"{receiver.url}/hook"], "secret": "s3cret", **extra}
    context = PluginContext("notify_webhook", Settings(), options, session_factory(engine))
    plugin = notify_webhook.create_plugin(context)
    _ENGINES.append(plugin.deliverer.reader.kw["bind"])
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(plugin, name="notify_webhook")
    runner = PluginRunner(PluginHost(manager, Hooks(manager, 5.0), {"notify_webhook": plugin}))
    runner.journal.fire_elsewhere(os.getpid())
    return runner


def _plugin(runner: PluginRunner) -> notify_webhook.NotifyWebhook:
    assert runner.host is not None
    plugin = runner.host.plugins["notify_webhook"]
    assert isinstance(plugin, notify_webhook.NotifyWebhook)
    return plugin


def _record(runner: PluginRunner, factory: sessionmaker[Session], count: int) -> list[OwedCall]:
    ticket = freeze({"number": 7, "subject": "Hi", "status": "open"})
    calls = [
        ("postdesk_notify", {"event": "ticket.created", "ticket": ticket, "detail": freeze({})})
        for _ in range(count)
    ]
    with transaction(factory) as session:
        return runner.journal.record(session, calls)


def _journal(factory: sessionmaker[Session]) -> list[tuple[str, int]]:
    with factory() as session:
        return [tuple(r) for r in session.execute(select(PluginEvent.key, PluginEvent.attempts))]


def _queue(factory: sessionmaker[Session]) -> list[tuple[str, int]]:
    with factory() as session:
        query = select(WebhookDelivery.status, WebhookDelivery.attempts)
        return [tuple(row) for row in session.execute(query)]


def test_journaled_events_are_queued_in_the_journals_transaction_and_posted_at_once(
    database_url: str,
) -> None:
    with Receiver() as receiver:
        runner = _runner(database_url, receiver)
        plugin = _plugin(runner)
        factory = plugin.factory
        stop_jobs = runner.start_jobs()  # the deliveries run: rows are handed over leased
        wait_until(lambda: plugin.deliverer.lease(utcnow()) is not None)
        owed = _record(runner, factory, 3)
        stop_firing = runner.start_firing(factory)
        try:
            wait_until(lambda: len(receiver.received) == 3, what="three POSTs")
            wait_until(lambda: _queue(factory) == [("sent", 1)] * 3, what="recorded sent")
        finally:
            stop_firing()
            stop_jobs()
            runner.drain(5)  # the firing loop ends (as the plugins process drains)
            runner.close()
    assert _journal(factory) == [], "deleted in the transaction that queued them"
    assert sorted(json.loads(body)["id"] for _h, body in receiver.received) == sorted(
        call.key for call in owed
    )
    assert plugin._flushing is None, "the hook itself was never called"
    assert receiver.attempts == 3, "each row POSTed once: never claimed again"


def test_without_running_deliveries_the_rows_wait_to_be_claimed(database_url: str) -> None:
    with Receiver() as receiver:
        runner = _runner(database_url, receiver)
        plugin = _plugin(runner)
        factory = plugin.factory
        try:
            _record(runner, factory, 2)
            assert runner.journal._owed(factory) == []  # taken, nothing left to fire
            with factory() as session:
                leases = session.scalars(select(WebhookDelivery.claimed_until)).all()
            assert leases == [None, None] and _journal(factory) == []
        finally:
            runner.close()


def test_a_failed_take_rolls_back_and_the_hook_fires_the_events_with_their_ids(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Receiver(fail_first=1) as receiver:
        runner = _runner(database_url, receiver, retry_base_seconds=0.05)
        plugin = _plugin(runner)
        factory = plugin.factory

        def broken(*_args: Any) -> None:
            raise RuntimeError("take failed")

        monkeypatch.setattr(plugin, "take_journaled", broken)
        owed = _record(runner, factory, 1)
        with pytest.raises(RuntimeError):
            runner.journal._owed(factory)
        assert _journal(factory) == [(owed[0].key, 0)], "rolled back: nothing was claimed"
        assert _queue(factory) == []
        stop_jobs = runner.start_jobs()
        stop_firing = runner.start_firing(factory)  # now through the hook (a later take)
        try:
            wait_until(lambda: len(receiver.received) == 1, what="POSTed after one failure")
        finally:
            stop_firing()
            stop_jobs()
            runner.drain(5)  # the firing loop ends (as the plugins process drains)
            runner.close()
    assert json.loads(receiver.received[0][1])["id"] == owed[0].key
    assert receiver.attempts == 2, "the failed POST was retried after its backoff"


def test_a_receiver_failure_of_a_handed_over_row_is_retried(database_url: str) -> None:
    with Receiver(fail_first=2) as receiver:
        runner = _runner(database_url, receiver, retry_base_seconds=0.05)
        plugin = _plugin(runner)
        factory = plugin.factory
        stop_jobs = runner.start_jobs()
        wait_until(lambda: plugin.deliverer.lease(utcnow()) is not None)
        owed = _record(runner, factory, 1)
        stop_firing = runner.start_firing(factory)
        try:
            wait_until(lambda: _queue(factory) == [("sent", 3)], what="sent at the third try")
        finally:
            stop_firing()
            stop_jobs()
            runner.drain(5)  # the firing loop ends (as the plugins process drains)
            runner.close()
    assert [json.loads(body)["id"] for _h, body in receiver.received] == [owed[0].key]


def test_rows_handed_over_and_not_posted_at_stop_are_released(database_url: str) -> None:
    """Deliveries that stop before POSTing the rows handed to them give up their leases, so
    the next deliveries claim them at once instead of after LEASE_SECONDS."""
    with Receiver() as receiver:
        runner = _runner(database_url, receiver)
        plugin = _plugin(runner)
        factory = plugin.factory
        _record(runner, factory, 2)

        async def stop_before_a_round() -> None:
            stop = asyncio.Event()
            running = asyncio.ensure_future(plugin.deliverer.run(stop))
            await asyncio.sleep(0.2)  # its first round is done: the next is a second away
            assert await asyncio.to_thread(runner.journal._owed, factory) == []
            await asyncio.sleep(0.05)  # the hand-over reaches the loop
            assert len(plugin.deliverer._handed) == 2
            stop.set()
            await running

        try:
            asyncio.run(stop_before_a_round())
            assert receiver.attempts == 0
            with factory() as session:
                leases = session.scalars(select(WebhookDelivery.claimed_until)).all()
            assert leases == [None, None], "released"

            async def deliver() -> int:
                senders = HttpPool(2, plugin.settings.timeout_seconds)
                try:
                    return await plugin.deliverer.deliver_due(senders)
                finally:
                    senders.close()

            assert asyncio.run(deliver()) == 2, "claimed and POSTed at once"
        finally:
            runner.close()
    assert len(receiver.received) == 2


def test_a_large_take_is_written_in_pages_of_few_shapes(database_url: str) -> None:
    """100 events in one take: every row queued and handed over, by INSERTs of at most 64 rows
    (``store.db.in_pages``), not one statement of 100 rows that the connection would keep
    compiled beside one for every other count."""
    rows: list[int] = []  # of each INSERT

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if statement.startswith("INSERT INTO webhook_deliveries"):
            columns = statement.split("(", 1)[1].split(")", 1)[0].count(",") + 1
            rows.append(len(parameters) // columns)

    with Receiver() as receiver:
        runner = _runner(database_url, receiver)
        plugin = _plugin(runner)
        factory = plugin.factory
        engine = factory.kw["bind"]
        stop_jobs = runner.start_jobs()  # rows are handed over leased: INSERT ... RETURNING
        event.listen(engine, "before_cursor_execute", seen)
        try:
            wait_until(lambda: plugin.deliverer.lease(utcnow()) is not None)
            _record(runner, factory, 100)
            assert runner.journal._owed(factory) == []  # all taken in one transaction
            wait_until(lambda: _queue(factory) == [("sent", 1)] * 100, what="100 sent")
        finally:
            event.remove(engine, "before_cursor_execute", seen)
            stop_jobs()
            runner.close()
    assert sorted(rows) == [4, 32, 64]
    assert receiver.attempts == 100 and _journal(factory) == []


def test_a_backlog_beyond_one_statements_parameters_is_taken_whole(database_url: str) -> None:
    """1,100 events waiting (the plugins process was down) on an SQLite built with the old
    default limit of 999 parameters a statement: read in chunks of at most 512, taken whole."""
    with Receiver() as receiver:
        runner = _runner(database_url, receiver)
        plugin = _plugin(runner)
        factory = plugin.factory
        engine = factory.kw["bind"]
        if engine.dialect.name == "sqlite":
            engine.dispose()  # connections from now on have the lower limit
            event.listen(engine, "connect", _old_parameter_limit)
        try:
            _record(runner, factory, 1_100)
            assert runner.journal._owed(factory) == []  # taken, nothing left to fire
            with factory() as session:
                queued = session.scalar(select(func.count()).select_from(WebhookDelivery))
            assert queued == 1_100 and _journal(factory) == []
        finally:
            runner.close()


def _old_parameter_limit(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
