"""The plugin event journal (R-17): recorded with the change, forgotten once answered, run
again with the same ``event_id`` when its process died; a live process's events are its own."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta
from typing import Any

import pluggy
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.store.db import transaction
from postdesk.models.plugin_events import PluginEvent
from postdesk.models.schema import utcnow
from postdesk.plugins import PROJECT, hookimpl, hookspecs
from postdesk.plugins.facade import Hooks
from postdesk.plugins.host import PluginHost
from postdesk.plugins.journal import LEASE_SECONDS, owner_name
from postdesk.plugins.runner import PluginRunner
from postdesk.plugins.snapshots import freeze
from tests.support import count_tasks, wait_until


class Recorder:
    """Remembers every ``postdesk_ticket_created`` call it hears."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []
        self.lock = threading.Lock()

    @hookimpl
    def postdesk_ticket_created(self, ticket: Any, event_id: str) -> None:
        with self.lock:
            self.calls.append((ticket["number"], event_id))


def _runner(recorder: Recorder) -> PluginRunner:
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(recorder, name="recorder")
    return PluginRunner(PluginHost(manager, Hooks(manager, 5.0), {"recorder": recorder}))


def _record(runner: PluginRunner, factory: sessionmaker[Session], number: int) -> list[Any]:
    with transaction(factory) as session:
        return runner.journal.record(
            session, [("postdesk_ticket_created", {"ticket": freeze({"number": number})})]
        )


def _rows(factory: sessionmaker[Session]) -> list[tuple[str, str, int]]:
    with factory() as session:
        query = select(PluginEvent.key, PluginEvent.owner, PluginEvent.attempts)
        return [tuple(row) for row in session.execute(query.order_by(PluginEvent.id))]


def _forgotten(runner: PluginRunner, factory: sessionmaker[Session]) -> None:
    """Sweep until the answered rows are gone: the hook has returned to the recorder a moment
    before its call counts as answered."""
    wait_until(
        lambda: runner.journal.sweep(factory, force=True) or _rows(factory) == [],
        what="the answered rows forgotten",
    )


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_answered_event_is_forgotten_and_a_dead_processs_is_run_again(
    factory: sessionmaker[Session],
) -> None:
    recorder = Recorder()
    runner = _runner(recorder)
    try:
        fired = _record(runner, factory, 1)
        runner.journal.fire(fired)
        wait_until(lambda: len(recorder.calls) == 1, what="the call")
        assert recorder.calls == [(1, fired[0].key)], "the row's key is the event_id"
        _forgotten(runner, factory)  # answered: forgotten

        # A process of this host that recorded an event and died before answering it.
        orphan = _record(runner, factory, 2)[0]
        host = owner_name().rpartition(":")[0]
        with transaction(factory) as session:
            session.execute(update(PluginEvent).values(owner=f"{host}:{_dead_pid()}"))
        runner.journal.sweep(factory, force=True)
        wait_until(lambda: len(recorder.calls) == 2, what="the re-run")
        assert recorder.calls[1] == (2, orphan.key), "run again with the same event_id"
        assert _rows(factory) == [(orphan.key, owner_name(), 2)], "taken over, attempt 2"
        _forgotten(runner, factory)
    finally:
        runner.close()


def test_a_live_processs_events_are_left_alone_until_its_lease_runs_out(
    factory: sessionmaker[Session],
) -> None:
    recorder = Recorder()
    runner = _runner(recorder)
    try:
        _record(runner, factory, 3)
        live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            host = owner_name().rpartition(":")[0]
            with transaction(factory) as session:  # another live worker's, and another host's
                session.execute(update(PluginEvent).values(owner=f"{host}:{live.pid}"))
            _record(runner, factory, 4)
            with transaction(factory) as session:
                session.execute(
                    update(PluginEvent)
                    .where(PluginEvent.owner == owner_name())
                    .values(owner="elsewhere.example:42")
                )
            runner.journal.sweep(factory, force=True)
            assert recorder.calls == [], "a live owner's event, and a fresh lease, are theirs"
            with transaction(factory) as session:
                expired = utcnow() - timedelta(seconds=1)
                session.execute(
                    update(PluginEvent)
                    .where(PluginEvent.owner == "elsewhere.example:42")
                    .values(lease_until=expired)
                )
            runner.journal.sweep(factory, force=True)
            wait_until(lambda: len(recorder.calls) == 1, what="the expired lease's re-run")
            assert recorder.calls[0][0] == 4
            wait_until(  # the re-run, once answered, is forgotten; the live owner's row stays
                lambda: (
                    runner.journal.sweep(factory, force=True)
                    or [owner for _k, owner, _a in _rows(factory)] == [f"{host}:{live.pid}"]
                ),
                what="only the live owner's row left",
            )
        finally:
            live.kill()
            live.wait()
    finally:
        runner.close()
    assert LEASE_SECONDS >= 60, "an owner on another host gets time before its events are taken"


def test_an_event_whose_process_died_three_times_is_dropped(factory: sessionmaker[Session]) -> None:
    recorder = Recorder()
    runner = _runner(recorder)
    try:
        _record(runner, factory, 5)
        host = owner_name().rpartition(":")[0]
        with transaction(factory) as session:
            session.execute(update(PluginEvent).values(owner=f"{host}:{_dead_pid()}", attempts=3))
        runner.journal.sweep(factory, force=True)
        assert _rows(factory) == [] and recorder.calls == [], "dropped, not fired a fourth time"
    finally:
        runner.close()


def test_an_event_with_unreadable_arguments_is_dropped_and_the_rest_run(
    factory: sessionmaker[Session],
) -> None:
    recorder = Recorder()
    runner = _runner(recorder)
    try:
        _record(runner, factory, 6)
        _record(runner, factory, 7)
        host = owner_name().rpartition(":")[0]
        with transaction(factory) as session:
            session.execute(update(PluginEvent).values(owner=f"{host}:{_dead_pid()}"))
            first = session.execute(select(PluginEvent.id).order_by(PluginEvent.id)).first()
            assert first is not None
            session.execute(
                update(PluginEvent).where(PluginEvent.id == first[0]).values(arguments="{broken")
            )
        runner.journal.sweep(factory, force=True)
        wait_until(lambda: len(recorder.calls) == 1, what="the readable event re-run")
        assert recorder.calls[0][0] == 7
        _forgotten(runner, factory)  # the unreadable row is dropped, not retried for ever
    finally:
        runner.close()


def test_the_journal_stays_empty_for_events_nobody_implements(
    factory: sessionmaker[Session],
) -> None:
    runner = _runner(Recorder())
    try:
        with transaction(factory) as session:
            owed = runner.journal.record(session, [("postdesk_ticket_updated", {"ticket": {}})])
        runner.journal.fire(owed)  # no implementation: answered at once
        runner.journal.sweep(factory, force=True)
        assert _rows(factory) == []
    finally:
        runner.close()


class Pager:
    """Acts on ``alert.*`` events only, and says so in ``notify_events``."""

    notify_events = ("alert.spoofed_agent",)

    def __init__(self) -> None:
        self.events: list[str] = []

    @hookimpl
    def postdesk_notify(self, event: str) -> None:
        self.events.append(event)


def test_a_notify_event_no_plugin_wants_is_neither_journaled_nor_fired(
    factory: sessionmaker[Session],
) -> None:
    """A plugin that names its ``notify_events`` hears only those: the others cost no journal
    row; a plugin without the attribute still hears every event."""
    pager = Pager()
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(pager, name="pager")
    runner = PluginRunner(PluginHost(manager, Hooks(manager, 5.0), {"pager": pager}))
    calls: list[tuple[str, dict[str, Any]]] = [
        ("postdesk_notify", {"event": event, "ticket": None, "detail": freeze({})})
        for event in ("ticket.created", "alert.spoofed_agent", "message.added")
    ]
    try:
        assert [c[1]["event"] for c in runner.heard(calls)] == ["alert.spoofed_agent"]
        with transaction(factory) as session:
            owed = runner.journal.record(session, runner.heard(calls))
        assert len(_rows(factory)) == 1
        runner.journal.fire(owed)
        runner.alert("alert.relay_refused", {"reason": "550"})  # fired from memory: not wanted
        wait_until(lambda: pager.events, what="the wanted event fired")
        runner.drain(5)
        assert pager.events == ["alert.spoofed_agent"]
        runner.journal.sweep(factory, force=True)
        assert _rows(factory) == []
    finally:
        runner.close()

    everything = _runner(Recorder())
    try:
        created = [("postdesk_ticket_created", {"ticket": freeze({"number": 1})})]
        assert everything.heard(created) == created
    finally:
        everything.close()


def test_a_messages_events_are_fired_at_once_one_task_each(
    factory: sessionmaker[Session],
) -> None:
    recorder = Recorder()
    runner = _runner(recorder)
    try:
        created = count_tasks(runner._running_loop())
        with transaction(factory) as session:
            calls = [("postdesk_ticket_created", {"ticket": freeze({"number": n})}) for n in (5, 6)]
            fired = runner.journal.record(session, calls)
        runner.journal.fire(fired)
        wait_until(lambda: len(recorder.calls) == 2, what="both calls")
        assert sorted(recorder.calls) == sorted((5 + n, call.key) for n, call in enumerate(fired))
        assert len(created) == 2, created
    finally:
        runner.close()


def test_a_workers_events_are_fired_by_the_plugins_process_never_in_the_worker(
    factory: sessionmaker[Session],
) -> None:
    """Under ``serve`` the worker records its events in serve's name and fires none; the
    plugins process fires each one once (with the row's key as ``event_id``) and forgets it,
    fires a dead process's event that a sweep takes over, and fires what is left as it stops.
    A restarted plugins process fires the events still waiting again, counting an attempt."""
    import os

    in_worker, in_plugins = Recorder(), Recorder()
    worker, plugins = _runner(in_worker), _runner(in_plugins)
    for runner in (worker, plugins):
        runner.journal.fire_elsewhere(os.getpid())  # serve is this process here
    try:
        fired = _record(worker, factory, 1) + _record(worker, factory, 2)
        worker.journal.fire(fired)
        stop_firing = plugins.start_firing(factory)
        wait_until(lambda: len(in_plugins.calls) == 2, what="the plugins process fires them")
        assert sorted(in_plugins.calls) == [(1, fired[0].key), (2, fired[1].key)]
        wait_until(lambda: _rows(factory) == [], what="answered rows forgotten")

        orphan = _record(worker, factory, 3)[0]
        host = owner_name().rpartition(":")[0]
        with transaction(factory) as session:
            session.execute(update(PluginEvent).values(owner=f"{host}:{_dead_pid()}"))
        worker.journal.sweep(factory, force=True)  # taken over, in serve's name
        wait_until(lambda: len(in_plugins.calls) == 3, what="the orphan fired again")
        assert in_plugins.calls[2] == (3, orphan.key)

        stop_firing()
        last = _record(worker, factory, 4)[0]  # the worker's last message, as serve stops
        stop_firing()
        wait_until(lambda: len(in_plugins.calls) == 4, what="the last event at stop")
        assert in_plugins.calls[3] == (4, last.key)
        assert in_worker.calls == [], "no plugin code ran in the worker"
        plugins.drain(5)
        plugins.journal.sweep(factory, force=True)  # as the plugins process does at its end
        assert _rows(factory) == []
    finally:
        worker.close()
        plugins.close()

    # A plugins process that died while an event waited: its successor fires it again.
    waiting = _record(worker, factory, 5)[0]
    again, successor = Recorder(), None
    try:
        successor = _runner(again)
        successor.journal.fire_elsewhere(os.getpid())
        stop_firing = successor.start_firing(factory)
        wait_until(lambda: again.calls == [(5, waiting.key)], what="the waiting event re-run")
        wait_until(lambda: _rows(factory) == [], what="forgotten once answered (a sweep)")
        stop_firing()
    finally:
        if successor is not None:
            successor.close()
