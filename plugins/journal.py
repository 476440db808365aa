"""Plugin events that survive a crash: written with their change, re-run after a kill (R-17).

The events step records each event hook call as a ``plugin_events`` row in the message's own
transaction, so the row exists exactly when the change it announces does. After the commit
the call is fired in the background with the row's key as ``event_id``, and the row is
deleted once every implementation has answered, failed or timed out (a failing plugin is
skipped, not retried). When the process that fired it dies first (``kill -9``, a plugin that
calls ``os._exit``), the row stays; the next :meth:`EventJournal.sweep` of a live process
fires it again with the same ``event_id``, so plugins can tell a re-run from a new event.

Under ``postdesk serve`` the worker processes leave the firing to the plugins process (see
:meth:`EventJournal.fire_elsewhere`): they write their rows in serve's name and fire nothing,
and the plugins process (``daemon/pluginproc.py``) fires every row in serve's name that it has
not fired yet, within ``POLL_SECONDS`` of its commit (:meth:`EventJournal.fire_journaled`), so
that plugin code costs the worker nothing and a plugin that kills its process kills neither
a worker nor serve. A restarted plugins process fires the rows still waiting again, each
counting an attempt.

A plugin whose events go into a durable queue of its own (the webhook plugin's table) may take
them there inside the plugins process's own transaction that claims the rows: its object offers
``take_journaled(connection, calls)`` (calls: ``TakenCall``), which writes them with
``connection`` and returns what to run once that commits (or None). A row whose every hearer
takes it is deleted in that same transaction (its queue rows are its durable answer), so it is
neither fired nor swept; a crash before the commit leaves the row to be claimed again, with the
same ``event_id``.

A row belongs to its owner, ``host:pid``. A sweep takes over the rows of owners on its own host
whose process is gone at once, and anyone's rows once their lease has run out (an owner on
another host that died). An event that has been fired ``MAX_ATTEMPTS`` times without an answer
(a hook that kills its process every time) is dropped with an error, like a poison message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Engine, Select, Table, delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.store.db import in_list, make_reader_engine, transaction
from postdesk.daemon.store.direct import Direct
from postdesk.models.plugin_events import PluginEvent
from postdesk.models.schema import utcnow
from postdesk.plugins.snapshots import freeze, json_default

if TYPE_CHECKING:
    from postdesk.plugins.runner import PluginRunner

log = logging.getLogger("postdesk.plugins")

LEASE_SECONDS = 600.0  # how long an owner on another host has before its events are re-run
SWEEP_SECONDS = 2.0  # answered rows are deleted, dead owners' rows re-run, this often
POLL_SECONDS = 0.1  # how often serve looks for rows the workers wrote in its name
MAX_ATTEMPTS = 3
EVENT_HOOKS = (  # the hooks whose calls are journaled
    "postdesk_ticket_created",
    "postdesk_message_added",
    "postdesk_ticket_updated",
    "postdesk_notify",
)
CHUNK = 512  # keys per DELETE or UPDATE at most
_TABLE = cast(Table, PluginEvent.__table__)
# Built once, run straight on the DBAPI cursor (see store/direct.py): a worker writes a row
# per message, and SQLAlchemy's own execution costs several times the DBAPI's.
_INSERT = Direct(
    insert(_TABLE),
    ["key", "hook", "arguments", "owner", "lease_until", "attempts", "created_at"],
)


# A call a plugin takes into its own durable queue: (event_id, hook, arguments as plain data).
TakenCall = tuple[str, str, dict[str, Any]]


@dataclass(frozen=True)
class OwedCall:
    """One recorded event hook call: its key (the hooks' ``event_id``), hook and arguments."""

    key: str
    hook: str
    arguments: Mapping[str, Any]


def owner_name(pid: int | None = None) -> str:
    """This process (or process ``pid`` of this host), as it owns journal rows: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


class EventJournal:
    """Records event hook calls in a transaction, fires them after it, and re-runs the dead's."""

    def __init__(self, runner: PluginRunner) -> None:
        """Fire recorded calls through ``runner``."""
        self.runner = runner
        self._answered: list[str] = []  # keys whose calls have all answered, not yet deleted
        self._lock = threading.Lock()
        self._swept_at = 0.0
        self._firer: str | None = None  # who fires this process's rows, when not itself
        self._fired: set[str] = set()  # keys fire_journaled fired, until their rows are gone
        self._read_all = True  # the next _owed reads every row of this process, not only new ones
        self._firing: set[asyncio.Future[None]] = set()  # its calls in flight
        self._taking = True  # whether plugins may take their calls in the journal's transaction

    def fire_elsewhere(self, pid: int) -> None:
        """Write this process's events in the name of process ``pid`` of this host (serve),
        for the plugins process to fire (:meth:`fire_journaled`); :meth:`fire` does nothing.
        The plugins process calls it too: it fires the rows in serve's name."""
        self._firer = owner_name(pid)

    def record(
        self, session: Session, calls: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[OwedCall]:
        """Write ``calls`` (hook, arguments: plain data) in ``session``'s transaction; fire them
        after it commits with :meth:`fire`. An argument several calls share (the ticket's
        snapshot) is turned into JSON once, and made read-only (:func:`freeze`) once, only
        when this process fires the calls itself: a worker under serve writes them alone."""
        if not calls:
            return []
        frozen: dict[int, Any] = {}
        owed = [
            OwedCall(
                uuid.uuid4().hex,
                hook,
                arguments if self._firer else _frozen(arguments, frozen),
            )
            for hook, arguments in calls
        ]
        now, owner = utcnow(), self._firer or owner_name()
        written: dict[int, str] = {}
        lease_until = now + timedelta(seconds=LEASE_SECONDS)
        rows = [
            {
                "key": call.key,
                "hook": call.hook,
                "arguments": _json_object(call.arguments, written),
                "owner": owner,
                "lease_until": lease_until,
                "attempts": 0 if self._firer else 1,  # fired here after the commit, or not yet
                "created_at": now,
            }
            for call in owed
        ]
        _INSERT.execute_many(session.connection(), rows)
        return owed

    def fire(self, owed: Sequence[OwedCall]) -> None:
        """Fire recorded calls in the background (one hand-over to the plugins' loop for all);
        each row is forgotten once its call is answered. Calls another process fires (see
        :meth:`fire_elsewhere`) are left to it."""
        if self._firer is not None:
            return
        heard = []
        for call in owed:
            if self.runner.implemented(call.hook):
                heard.append(call)
            else:  # no plugin implements it (any more): nothing is owed
                self._answer(call.key)
        if heard:
            self.runner.submit(self._fire_all(heard))

    async def _fire_all(self, owed: Sequence[OwedCall]) -> None:
        """Every call at once: the first in this task, each other one in its own."""
        others = [asyncio.ensure_future(self._fire(call)) for call in owed[1:]]
        await self._fire(owed[0])
        if others:
            await asyncio.wait(others)

    async def _fire(self, call: OwedCall) -> None:
        facade = self.runner.hooks
        try:
            if facade is not None:
                await facade.fire(call.hook, event_id=call.key, **call.arguments)
        finally:
            self._answer(call.key)

    def _answer(self, key: str) -> None:
        with self._lock:
            self._answered.append(key)

    async def fire_journaled(self, factory: sessionmaker[Session], stop: asyncio.Event) -> None:
        """In the plugins process, on the plugins' loop until ``stop`` is set: fire the rows
        the workers wrote in serve's name (see :meth:`fire_elsewhere`) within
        ``POLL_SECONDS`` of their commit, and sweep (:meth:`sweep`)."""
        while not stop.is_set():
            try:
                owed = await asyncio.to_thread(self._owed, factory)
            except Exception as error:
                log.warning("plugin event journal: reading it failed, will retry: %s", error)
                owed = []
            if owed:
                firing = asyncio.ensure_future(self._fire_all(owed))
                self._firing.add(firing)
                firing.add_done_callback(self._firing.discard)
            if time.monotonic() - self._swept_at >= SWEEP_SECONDS:  # no thread hop otherwise
                await asyncio.to_thread(self.sweep, factory)
            # A read takes every row written so far: the next is due in POLL_SECONDS, found rows
            # or not. A plain sleep: stopping waits for it, but it costs no task, unlike a
            # wait_for the stop event (ten times a second, also when idle).
            await asyncio.sleep(POLL_SECONDS)

    def fire_remaining(self, factory: sessionmaker[Session]) -> None:
        """Fire the rows not fired yet once more as the plugins process stops, for the events
        of the workers' last messages (if the database answers; else the next start re-runs
        them)."""
        try:
            owed = self._owed(factory)
        except Exception as error:
            log.warning("plugin event journal: could not read it at stop: %s", error)
            return
        if owed:
            self.runner.submit(self._fire_all(owed))

    def _owed(self, factory: sessionmaker[Session]) -> list[OwedCall]:
        """The rows this process fires that it has not fired yet, each counting an attempt
        (a restarted plugins process fires again what its predecessor was firing when it
        died; past MAX_ATTEMPTS a row is dropped). The keys are read first, so that only the
        new rows are written to."""
        me = self._firer or owner_name()
        mine = select(_TABLE.c.key).where(_TABLE.c.owner == me)
        if self._read_all:  # at start, and after a take-over: rows fired before, too
            self._read_all = False
            keys = _read_keys(factory, mine)
            self._fired &= keys  # the rows deleted since are gone for good
        else:  # only the rows written since: never fired (see record)
            keys = _read_keys(factory, mine.where(_TABLE.c.attempts == 0))
        new = keys - self._fired
        if not new:
            return []
        owed: list[OwedCall] = []
        taken: dict[int, tuple[Any, list[TakenCall]]] = {}  # by plugin: what it takes
        with transaction(factory) as session:
            # Read with this attempt counted; written back only for the calls fired: a row
            # taken or dropped is deleted in this same transaction.
            columns = (_TABLE.c.key, _TABLE.c.hook, _TABLE.c.arguments, _TABLE.c.attempts + 1)
            rows = [
                row
                for chunk in _chunks(list(new))  # a backlog may exceed a statement's parameters
                for row in session.execute(
                    select(*columns)
                    .where(_TABLE.c.key.in_(chunk), _TABLE.c.owner == me)
                    .with_for_update()
                )
            ]
            gone = []  # rows done with in this transaction
            for key, hook, arguments, attempts in rows:
                if attempts > MAX_ATTEMPTS:
                    _log_dropped(key, hook)
                    gone.append(key)
                    continue
                if attempts > 1:
                    log.warning("plugin event %s (%s) re-run (attempt %d)", key, hook, attempts)
                try:
                    loaded = json.loads(arguments)
                    takers = self._takers(hook, loaded)
                    if not takers:
                        loaded = {k: freeze(v) for k, v in loaded.items()}
                except (ValueError, AttributeError) as error:
                    log.error("plugin event %s dropped: unreadable arguments: %s", key, error)
                    gone.append(key)
                    continue
                if takers:
                    for plugin in takers:
                        taken.setdefault(id(plugin), (plugin, []))[1].append((key, hook, loaded))
                    gone.append(key)
                elif self.runner.implemented(hook):
                    owed.append(OwedCall(key, hook, loaded))
                else:
                    gone.append(key)
            after = [self._take(session, plugin, calls) for plugin, calls in taken.values()]
            for chunk in _chunks(gone):
                session.execute(delete(_TABLE).where(_TABLE.c.key.in_(chunk)))
            for chunk in _chunks([call.key for call in owed]):  # fired: the attempt counts
                counted = _TABLE.c.attempts + 1
                session.execute(
                    update(_TABLE).where(_TABLE.c.key.in_(chunk)).values(attempts=counted)
                )
        self._fired.update(key for key, *_rest in rows)  # only once committed
        self._fired.difference_update(gone)  # gone for good
        for then in after:
            if then is not None:
                then()
        return owed

    def _takers(self, hook: str, arguments: Mapping[str, Any]) -> list[Any]:
        """The plugins that take the call ``hook(arguments)`` in the journal's transaction
        (``Hooks.takers``); none once a take has failed in this process."""
        facade = self.runner.hooks
        if facade is None or not self._taking or not isinstance(arguments, dict):
            return []
        return facade.takers(hook, arguments)

    def _take(
        self, session: Session, plugin: Any, calls: list[TakenCall]
    ) -> Callable[[], None] | None:
        """Let ``plugin`` take ``calls`` into its own queue in ``session``'s transaction;
        returns what it wants run once that commits. A take that fails rolls the transaction
        back and makes this process fire every later call through the hooks instead."""
        try:
            return cast(
                "Callable[[], None] | None", plugin.take_journaled(session.connection(), calls)
            )
        except Exception:
            self._taking = False
            log.exception("plugin events: a plugin failed to take its events; firing them")
            raise

    def sweep(self, factory: sessionmaker[Session], force: bool = False) -> None:
        """Delete the rows of answered calls and re-run the calls of dead owners; at most every
        ``SWEEP_SECONDS`` unless ``force``. Database trouble waits for the next sweep."""
        if not force and time.monotonic() - self._swept_at < SWEEP_SECONDS:
            return
        self._swept_at = time.monotonic()
        try:
            self._forget_answered(factory)
            self.fire(self._take_over(factory))
        except Exception as error:
            log.warning("plugin event journal: sweep failed, will retry: %s", error)

    def _forget_answered(self, factory: sessionmaker[Session]) -> None:
        with self._lock:
            answered, self._answered = self._answered, []
        if not answered:
            return
        try:
            with transaction(factory) as session:
                for chunk in _chunks(answered):
                    session.execute(delete(_TABLE).where(_TABLE.c.key.in_(chunk)))
        except Exception:
            with self._lock:
                self._answered[:0] = answered
            raise
        self._fired.difference_update(answered)  # gone for good

    def _take_over(self, factory: sessionmaker[Session]) -> list[OwedCall]:
        """Claim the rows of dead owners (one conditional UPDATE each, so of several live
        processes only one takes a row); the calls to fire again."""
        me, now = self._firer or owner_name(), utcnow()
        with factory() as session:
            rows = session.execute(
                select(_TABLE.c.key, _TABLE.c.owner, _TABLE.c.lease_until).where(
                    _TABLE.c.owner != me
                )
            ).all()
        dead = [row for row in rows if _gone(row.owner) or _aware(row.lease_until) < now]
        if not dead:
            return []
        taken: list[OwedCall] = []
        with transaction(factory) as session:
            for row in dead:
                claimed = session.execute(
                    update(_TABLE)
                    .where(_TABLE.c.key == row.key, _TABLE.c.owner == row.owner)
                    .values(
                        owner=me,
                        lease_until=now + timedelta(seconds=LEASE_SECONDS),
                        attempts=_TABLE.c.attempts + (0 if self._firer else 1),  # see _owed
                    )
                    .returning(_TABLE.c.hook, _TABLE.c.arguments, _TABLE.c.attempts)
                ).first()
                if claimed is not None and self._firer is not None:
                    self._read_all = True  # the plugins process fires it (see _owed)
                if claimed is None or self._firer is not None:
                    continue  # another process took it first, or the plugins process fires it
                if claimed.attempts > MAX_ATTEMPTS:
                    _log_dropped(row.key, claimed.hook)
                    session.execute(delete(_TABLE).where(_TABLE.c.key == row.key))
                    continue
                try:
                    arguments = {k: freeze(v) for k, v in json.loads(claimed.arguments).items()}
                except (ValueError, AttributeError) as error:
                    log.error("plugin event %s dropped: unreadable arguments: %s", row.key, error)
                    session.execute(delete(_TABLE).where(_TABLE.c.key == row.key))
                    continue
                log.warning(
                    "plugin event %s (%s) of %s re-run (attempt %d)",
                    row.key,
                    claimed.hook,
                    row.owner,
                    claimed.attempts,
                )
                taken.append(OwedCall(row.key, claimed.hook, arguments))
        return taken


def _read_keys(factory: sessionmaker[Session], query: Select[tuple[str]]) -> set[str]:
    """The keys ``query`` selects, read through a plain connection (a session costs three
    times the read, ten times a second); on an SQLite file through a reader connection, which
    never queues behind the worker's write lock (see ``make_reader_engine``)."""
    bind: Engine = factory.kw["bind"]
    if bind.dialect.name == "sqlite" and bind.url.database not in (None, "", ":memory:"):
        bind = make_reader_engine(bind.url.render_as_string(hide_password=False))
    with bind.connect() as connection:
        return set(connection.scalars(query))


def _chunks(keys: list[str]) -> list[list[str]]:
    """``keys`` in lists of at most ``CHUNK``, one statement each (each an :func:`in_list`)."""
    return [in_list(keys[start : start + CHUNK]) for start in range(0, len(keys), CHUNK)]


def _log_dropped(key: str, hook: str) -> None:
    log.error(
        "plugin event %s (%s) dropped: its process died %d times while it ran",
        key,
        hook,
        MAX_ATTEMPTS,
    )


def _frozen(arguments: Mapping[str, Any], done: dict[int, Any]) -> dict[str, Any]:
    """``arguments`` with each value made read-only once per ``done`` (by identity)."""
    frozen = {}
    for name, value in arguments.items():
        if id(value) not in done:
            done[id(value)] = freeze(value)
        frozen[name] = done[id(value)]
    return frozen


def _json_object(arguments: Mapping[str, Any], written: dict[int, str]) -> str:
    """``arguments`` as a JSON object, each value turned into JSON once per ``written`` (by
    identity: snapshots are read-only, so the same object always reads the same)."""
    parts = []
    for name, value in arguments.items():
        text = written.get(id(value))
        if text is None:
            text = written[id(value)] = json.dumps(value, default=json_default)
        parts.append(f"{json.dumps(name)}: {text}")
    return "{" + ", ".join(parts) + "}"


def _gone(owner: str) -> bool:
    """True when ``owner`` (``host:pid``) is a process of this host that no longer runs."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """True when ``pid`` has exited but its parent has not reaped it yet (Linux)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _aware(at: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC): make them comparable."""
    return at if at.tzinfo is not None else at.replace(tzinfo=utcnow().tzinfo)


__all__ = ["EVENT_HOOKS", "EventJournal", "OwedCall", "TakenCall", "owner_name"]
