"""The plugins as synchronous code sees them: the facade on its own event-loop thread.

The worker is synchronous and must never wait on a plugin longer than a lookup's timeout;
the serve process must never run plugin code on its SMTP event loop. So the :class:`Hooks`
facade, and the plugins' background jobs, run on an event loop (uvloop's) in a background
thread (started on first use): events are handed over and not waited for, lookups return a future
the caller waits on with a deadline, and lookups run with bounded concurrency and a brief
cache of their answers. Under serve the worker asks its lookups of the plugins process, which
answers them over a Unix socket (:meth:`PluginRunner.start_answering`), so that the worker's
own CPU goes to the pipeline, not to contacts and orders.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvloop
from sqlalchemy.orm import Session, sessionmaker

from postdesk.plugins.board import FactsBoard, posting
from postdesk.plugins.facade import Hooks
from postdesk.plugins.facts import FRESH_SECONDS, Asker, Facts, FactsFolder, LookupKey
from postdesk.plugins.host import PluginHost
from postdesk.plugins.journal import EVENT_HOOKS, EventJournal
from postdesk.plugins.prefetch import prefetch_spooled
from postdesk.plugins.snapshots import Snapshot, freeze, thaw

log = logging.getLogger("postdesk.plugins")

# Questions from the workers looked up at once: as for the prefetch (prefetch.CONCURRENCY), a
# slow API answers many messages in parallel.
LOOKUP_CONCURRENCY = 64
CACHE_ENTRIES = 2048
LOOKUP_HOOKS = ("postdesk_lookup_contact", "postdesk_lookup_orders")
CONTACT = "\0contact"  # cache key part: a contact is cached by address, not by text

SOON_SECONDS = 0.025  # the longest soon() waits for facts on their way
COMPLETERS = 4  # threads completing what waited for lookups (they write together)
JOB_STOP_SECONDS = 10.0  # how long the plugins' jobs have to end once told to stop


class PluginRunner:
    """Calls hooks from synchronous code; a runner without a host does nothing."""

    def __init__(self, host: PluginHost | None = None, folder: FactsFolder | None = None) -> None:
        """Run ``host``'s hooks (each call with its plugin's timeout, see the facade); lookups
        asked of another process go through ``folder``."""
        self.host = host
        self.folder = folder
        self.asker: Asker | None = None  # asks the lookups of another process, when set
        self.board: FactsBoard | None = None  # and reads the facts it posts unasked
        self._asked: dict[concurrent.futures.Future[Facts], tuple[str, LookupKey]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], tuple[float, Facts]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._inflight: dict[tuple[str, str], asyncio.Future[Facts]] = {}
        self._completions = ThreadPoolExecutor(COMPLETERS, thread_name_prefix="postdesk-facts")
        self._laters: set[concurrent.futures.Future[None]] = set()  # completions to come
        self._soon = True  # whether soon() waits for facts on their way
        self.journal = EventJournal(self)  # event calls recorded with their change

    @property
    def hooks(self) -> Hooks | None:
        """The facade, when plugins are loaded."""
        return self.host.hooks if self.host is not None else None

    def implemented(self, *hooks: str) -> bool:
        """True when any plugin implements any of ``hooks``."""
        facade = self.hooks
        return facade is not None and any(facade.implemented(h) for h in hooks)

    def heard(self, calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
        """The event hook calls (hook, arguments) some plugin wants (see ``Hooks.hears``):
        only those are journaled and fired."""
        facade = self.hooks
        return [c for c in calls if facade.hears(*c)] if facade is not None else []

    # --- events: handed over, never waited for ------------------------------------------

    def fire(self, hook: str, **kwargs: Any) -> concurrent.futures.Future[None] | None:
        """Call an event hook in the background; returns at once, with a future that is done
        when every implementation has answered (None when none implements ``hook``).

        ``event_id`` identifies the event to plugins; a new one is made unless given (the
        journal gives a recorded event's own, so that a re-run carries the same).
        """
        facade = self.hooks
        if facade is None or not facade.hears(hook, kwargs):
            return None
        kwargs.setdefault("event_id", uuid.uuid4().hex)
        return self.submit(facade.fire(hook, **kwargs))

    def notify(self, event: str, ticket: Snapshot | None, detail: Mapping[str, Any]) -> None:
        """Fire ``postdesk_notify`` for ``event`` in the background."""
        self.fire("postdesk_notify", event=event, ticket=ticket, detail=freeze(dict(detail)))

    def alert(self, event: str, detail: dict[str, object]) -> None:
        """Fire ``postdesk_notify`` for an alert about no ticket (relay, IMAP)."""
        self.notify(event, None, detail)

    def has_jobs(self) -> bool:
        """True when some plugin has a long-running job (``async def serve(stop)``)."""
        return self.host is not None and bool(self.host.background())

    def start_jobs(self) -> Callable[[], None]:
        """Start the plugins' long-running jobs (their ``async def serve(stop)``) on the
        plugins' loop; returns the function that tells them to stop and waits up to
        ``JOB_STOP_SECONDS`` for them to end. Run by serve's plugins process, so that a job's
        work (webhook deliveries) never takes CPU from serve's SMTP front or a worker."""
        jobs = self.host.background() if self.host is not None else []
        return self._until_stopped(jobs)

    def _until_stopped(
        self, jobs: Sequence[Callable[[asyncio.Event], Coroutine[Any, Any, Any]]]
    ) -> Callable[[], None]:
        """Run each of ``jobs`` (given one shared stop event) on the plugins' loop until told
        to stop; returns the function that tells them and waits up to ``JOB_STOP_SECONDS`` for
        them to end. An ending job is logged (:func:`_log_job_end`)."""
        if not jobs:
            return lambda: None
        loop = self._running_loop()
        stop = asyncio.Event()
        running = [self.submit(job(stop)) for job in jobs]
        for future in running:
            future.add_done_callback(_log_job_end)

        def stop_jobs() -> None:
            loop.call_soon_threadsafe(stop.set)
            concurrent.futures.wait(running, timeout=JOB_STOP_SECONDS)

        return stop_jobs

    def start_firing(self, factory: sessionmaker[Session]) -> Callable[[], None]:
        """Fire, on the plugins' loop, the events the workers journal in ``factory``'s
        database (:meth:`EventJournal.fire_journaled`); returns the function that stops it and
        fires what is left. Does nothing when no plugin hears events."""
        if not self.implemented(*EVENT_HOOKS):
            return lambda: None
        loop = self._running_loop()
        stop = asyncio.Event()
        self.submit(self.journal.fire_journaled(factory, stop))

        def stop_firing() -> None:
            loop.call_soon_threadsafe(stop.set)
            self.journal.fire_remaining(factory)

        return stop_firing

    # --- lookups: bounded, cached, waited for with a deadline ---------------------------

    def lookup(
        self, email: str, text: str, spool_id: str = ""
    ) -> concurrent.futures.Future[Facts] | None:
        """Start gathering contact and order facts for the message ``spool_id``; None when no
        plugin looks anything up. When another process answers lookups (see
        :meth:`look_up_elsewhere`), the question is handed to it instead."""
        if not self.implemented(*LOOKUP_HOOKS):
            return None
        key = (email.lower(), text)
        if self.asker is not None and spool_id:
            answer: concurrent.futures.Future[Facts] = concurrent.futures.Future()
            posted = self.board.take(spool_id, key) if self.board is not None else None
            if posted is not None:  # no question, no other thread: the answer is here
                answer.set_result(posted)
                return answer
            self._asked[answer] = (spool_id, key)  # posted later perhaps: see soon()
            answer.add_done_callback(self._forget)
            loop = self._running_loop()
            loop.call_soon_threadsafe(self._ask_elsewhere, self.asker, spool_id, key, answer)
            return answer
        found = self._cached(key)
        if found is None:
            return self.submit(self._lookup(key))
        done: concurrent.futures.Future[Facts] = concurrent.futures.Future()
        done.set_result(found)
        return done

    def look_up_elsewhere(self) -> None:
        """Hand this process's lookups to the process answering them over :attr:`folder`'s
        socket (serve's plugins process, see :meth:`start_answering`): the worker then spends
        no time on contacts and orders."""
        self.asker = self.folder.asker() if self.folder is not None else None
        self.board = FactsBoard(self.folder.socket) if self.folder is not None else None

    def _forget(self, answered: concurrent.futures.Future[Facts]) -> None:
        """Forget the question of an answered lookup (see :meth:`_posted`)."""
        self._asked.pop(answered, None)

    def _posted(self, pending: concurrent.futures.Future[Facts]) -> Facts | None:
        """The facts posted meanwhile for the question ``pending`` waits for, if any."""
        asked = self._asked.get(pending)
        if asked is None or self.board is None:
            return None
        return self.board.take(*asked)

    def _ask_elsewhere(
        self,
        asker: Asker,
        spool_id: str,
        key: LookupKey,
        answer: concurrent.futures.Future[Facts],
    ) -> None:
        """On the plugins' loop: ask ``asker`` about ``spool_id``; ``answer`` gets the facts,
        or the lookup's own when none came within the lookup timeout (the answering process
        is down). Callbacks only: no task per message."""
        loop = asyncio.get_running_loop()

        def too_late() -> None:
            if asker.withdraw(spool_id):
                log.warning("no answer to the plugin lookups of %s; looking up here", spool_id)
                _settle(answer, self._start(key))

        timer = loop.call_later(self._waited(*LOOKUP_HOOKS), too_late)

        def answered(facts: Facts) -> None:
            timer.cancel()
            if not answer.done():
                answer.set_result(facts)

        asker.ask(spool_id, key, answered)

    # --- answering the lookups the workers ask for, in the plugins process -----------

    def start_answering(self) -> Callable[[], None]:
        """Answer, on the plugins' loop, the lookups the workers ask over :attr:`folder`'s
        socket (many at once, at most LOOKUP_CONCURRENCY); returns the function that stops it.
        Does nothing when no plugin looks anything up. Run by serve's plugins process, so that
        plugin lookups never cost a worker its CPU."""
        folder = self.folder
        if folder is None or not self.implemented(*LOOKUP_HOOKS):
            return lambda: None
        return self._until_stopped(
            [lambda stop: folder.answer_questions(self._start, stop, LOOKUP_CONCURRENCY)]
        )

    def start_prefetching(self, folder: Path, skip: Iterable[str]) -> Callable[[], None]:
        """Start, on the plugins' loop, the lookups of the messages waiting in ``folder`` (the
        spool's ``new``) before a worker asks for them, to warm the caches
        (:mod:`postdesk.plugins.prefetch`; mail from the addresses in ``skip`` is left out);
        returns the function that stops it. Does nothing when no plugin looks anything up."""
        if not self.implemented(*LOOKUP_HOOKS):
            return lambda: None
        return self._until_stopped([lambda stop: prefetch_spooled(folder, self._warm, stop, skip)])

    def facts(self, pending: concurrent.futures.Future[Facts] | None) -> Facts:
        """The facts a :meth:`lookup` gathered, or ``{}`` when none arrive within the timeout."""
        if pending is None:
            return {}
        limit = self._waited(*LOOKUP_HOOKS)
        try:
            return pending.result(timeout=self.lookup_wait())
        except concurrent.futures.TimeoutError:
            log.warning("plugin lookups took longer than %.1f s; notifying without them", limit)
        except Exception:
            log.exception("plugin lookups failed; notifying without them")
        return {}

    def lookup_wait(self) -> float:
        """The longest a lookup's facts are waited for (the plugins' lookup timeouts)."""
        return self._waited(*LOOKUP_HOOKS) + 0.5

    def ready(self, pending: concurrent.futures.Future[Facts] | None) -> Facts | None:
        """The facts a :meth:`lookup` gathered if it has finished (``{}`` when it failed or
        none was started), else None: never waits."""
        if pending is None:
            return {}
        if not pending.done():
            return None
        if pending.exception() is not None:
            log.error("plugin lookups failed; notifying without them", exc_info=pending.exception())
            return {}
        return pending.result()

    def soon(self, pending: concurrent.futures.Future[Facts] | None) -> Facts | None:
        """Like :meth:`ready`, but waits up to ``SOON_SECONDS`` for facts that are on their
        way: only while the lookups have lately been answered by the time they were needed (the
        plugins process answering from caches it warmed, see :mod:`postdesk.plugins.prefetch`).
        A wait that ends empty-handed stops the waiting until an answer is found ready again,
        so a slow or hanging plugin costs at most one such wait per answer found ready."""
        found = self.ready(pending)
        if found is None and pending is not None:
            found = self._posted(pending)
        if found is not None or pending is None:
            self._soon = True
            return found
        if not self._soon:
            return None
        try:
            pending.result(timeout=SOON_SECONDS)
        except concurrent.futures.TimeoutError:
            self._soon = False
            return None
        except Exception:
            pass  # ready() logs it
        return self.ready(pending)

    def later(
        self, pending: concurrent.futures.Future[Facts], then: Callable[[Facts], None]
    ) -> None:
        """Call ``then(facts)`` in a worker thread once the lookups of ``pending`` finish, or
        with ``{}`` when they fail or take longer than the timeout; returns at once. Callbacks
        and a timer only: no task per message."""
        once = threading.Lock()
        completed: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._laters.add(completed)  # drain waits for it
        completed.add_done_callback(self._laters.discard)

        def hand_over(facts: Facts) -> None:  # in whichever thread comes first
            if once.acquire(blocking=False):
                self._completions.submit(_complete, then, facts, completed)

        def finished(done: concurrent.futures.Future[Facts]) -> None:
            hand_over(self.ready(done) or {})

        def too_late() -> None:
            if not pending.done():
                limit = self._waited(*LOOKUP_HOOKS)
                log.warning("plugin lookups took longer than %.1f s; notifying without them", limit)
                hand_over({})

        if not pending.done():
            loop = self._running_loop()
            loop.call_soon_threadsafe(loop.call_later, self.lookup_wait(), too_late)
        pending.add_done_callback(finished)

    async def _lookup(self, key: tuple[str, str]) -> Facts:
        """The facts for ``key`` (see :meth:`_start`)."""
        return await asyncio.shield(self._start(key))

    def _start(self, key: tuple[str, str]) -> asyncio.Future[Facts]:
        """The lookup of ``key``: its cached facts (a prefetch of the same key, see
        :meth:`_warm`, or an earlier question), the one already in flight for the same key,
        or a new one."""
        running = self._inflight.get(key)
        if running is None and (cached := self._cached(key)) is not None:
            running = asyncio.get_running_loop().create_future()
            running.set_result(cached)
        elif running is None:
            running = asyncio.ensure_future(self._gather(key))
            self._inflight[key] = running
            running.add_done_callback(lambda _done: self._inflight.pop(key, None))
        return running

    def _warm(self, spool_id: str, key: LookupKey, exact: bool) -> asyncio.Future[Facts]:
        """The lookups of ``key`` started by a prefetch of the message ``spool_id`` (see
        :mod:`postdesk.plugins.prefetch`): when ``key`` is ``exact``ly the one the worker will
        ask with, its answer is kept and shared like a question's and posted to the workers
        (:mod:`postdesk.plugins.board`: the worker then need not ask); else only the caches of
        the contact and the plugins are filled."""
        if exact:
            running = self._start(key)
            running.add_done_callback(functools.partial(self._post, spool_id, key))
            return running
        if self._cached(key) is not None or key in self._inflight:
            done: asyncio.Future[Facts] = asyncio.get_running_loop().create_future()
            done.set_result({})
            return done
        return asyncio.ensure_future(self._gather(key, remember=False))

    def _post(self, spool_id: str, key: LookupKey, done: asyncio.Future[Facts]) -> None:
        """Post the facts a prefetch found for ``spool_id`` to the listening workers."""
        folder = self.folder
        if folder is None or not folder.listeners or done.cancelled() or done.exception():
            return
        folder.post(posting(spool_id, key, done.result()))

    async def _gather(self, key: tuple[str, str], remember: bool = True) -> Facts:
        facade = self.hooks
        assert facade is not None
        email, text = key
        contact = self._contact(facade, email)  # runs while the orders are collected here
        orders = await facade.collect("postdesk_lookup_orders", email=email, text=text)
        if isinstance(contact, asyncio.Future):
            await asyncio.wait([contact])  # unlike await, never cancels a shared lookup
            contact = contact.result().get("contact")
        facts: Facts = {"contact": contact} if contact is not None else {}
        joined = [thaw(order) for answer in orders for order in answer]
        if joined:
            facts["orders"] = joined
        if remember:
            self._remember(key, facts)
        return facts

    def _contact(self, facade: Hooks, email: str) -> Any:
        """The cached contact card (cached by address alone: a sender's messages share it),
        else the lookup of it (shared with one already in flight), a future of
        ``{"contact": card}`` or ``{}``."""
        if not facade.implemented("postdesk_lookup_contact"):
            return None
        key = (email, CONTACT)
        cached = self._cached(key)
        if cached is not None:
            return cached.get("contact")
        running = self._inflight.get(key)
        if running is None:
            running = asyncio.ensure_future(self._ask_contact(facade, key))
            self._inflight[key] = running
            running.add_done_callback(lambda _done: self._inflight.pop(key, None))
        return running

    async def _ask_contact(self, facade: Hooks, key: tuple[str, str]) -> Facts:
        answer = await facade.first("postdesk_lookup_contact", email=key[0])
        found: Facts = {"contact": thaw(answer)} if answer is not None else {}
        self._remember(key, found)
        return found

    def _cached(self, key: tuple[str, str]) -> Facts | None:
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is None or hit[0] < time.monotonic():
                return None
            return hit[1]

    def _remember(self, key: tuple[str, str], facts: Facts) -> None:
        with self._cache_lock:
            self._cache[key] = (time.monotonic() + FRESH_SECONDS, facts)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)

    def _waited(self, *hooks: str) -> float:
        """The longest the plugins may take to answer ``hooks`` (their lookup timeouts)."""
        facade = self.hooks
        return max((facade.longest(h) for h in hooks), default=0) if facade is not None else 0

    # --- template variables: answered inside the transaction, so cut short ---------------

    def template_variables(self, template: str, ticket: Snapshot | None) -> dict[str, Any]:
        """The merged answers of ``postdesk_template_variables`` (earlier plugins win)."""
        facade = self.hooks
        hook = "postdesk_template_variables"
        if facade is None or not facade.implemented(hook):
            return {}
        call = facade.collect(hook, template=template, ticket=ticket)
        try:
            answers = self.submit(call).result(timeout=self._waited(hook) + 0.5)
        except Exception:
            log.exception("plugin template variables failed; rendering without them")
            return {}
        merged: dict[str, Any] = {}
        for answer in reversed(answers):
            merged.update(thaw(answer))
        return merged

    # --- the loop thread -----------------------------------------------------------------

    def submit(self, coroutine: Any) -> concurrent.futures.Future[Any]:
        """Run ``coroutine`` on the plugins' loop thread (started on first use); returns at
        once with its future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                # libuv's loop, in C: a fraction of asyncio's CPU per callback, timer and read,
                # of which a message's lookups and events take dozens here.
                loop = uvloop.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="postdesk-plugins", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for hook calls in flight (events before shutdown) and for
        what waits for lookups (:meth:`later`)."""
        loop = self._loop
        if loop is None:
            return
        deadline = time.monotonic() + timeout
        asker = self.asker

        async def pending() -> None:
            idle = {asyncio.current_task(), asker.link if asker is not None else None}
            while time.monotonic() < deadline:  # tasks may start more tasks (a batched write)
                tasks = [t for t in asyncio.all_tasks() if t not in idle and not t.done()]
                if not tasks:
                    return
                await asyncio.wait(tasks, timeout=deadline - time.monotonic())

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(pending(), loop).result(timeout + 1)
        concurrent.futures.wait(list(self._laters), timeout=max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Let plugins close what lives on the loop (``async def aclose()``), stop the loop
        thread and release the plugins."""
        loop, thread = self._loop, self._thread
        if self.board is not None:
            self.board.close()
        if loop is not None and thread is not None:
            if self.asker is not None:
                loop.call_soon_threadsafe(self.asker.close)
            for plugin in self.host.plugins.values() if self.host is not None else ():
                closer = getattr(plugin, "aclose", None)
                if callable(closer):
                    with contextlib.suppress(Exception):
                        asyncio.run_coroutine_threadsafe(closer(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            self._completions.shutdown(wait=False)
            if not thread.is_alive():
                loop.close()
        if self.host is not None:
            self.host.close()


def _settle(answer: concurrent.futures.Future[Facts], lookup: asyncio.Future[Facts]) -> None:
    """Give ``answer`` the outcome of ``lookup`` once it has one."""

    def copy(done: asyncio.Future[Facts]) -> None:
        if answer.done():
            return
        if done.cancelled() or done.exception() is not None:
            answer.set_exception(done.exception() or concurrent.futures.CancelledError())
        else:
            answer.set_result(done.result())

    lookup.add_done_callback(copy)


def _complete(
    then: Callable[[Facts], None], facts: Facts, completed: concurrent.futures.Future[None]
) -> None:
    """Run ``then(facts)``, logging what goes wrong (it runs in a pool thread); then mark
    ``completed``."""
    try:
        then(facts)
    except Exception:
        log.exception("completing what waited for the plugin lookups failed")
    finally:
        completed.set_result(None)


def _log_job_end(future: concurrent.futures.Future[None]) -> None:
    """Log a plugin's long-running job that ended by an error."""
    if not future.cancelled() and future.exception() is not None:
        log.error("a plugin's background job failed", exc_info=future.exception())
