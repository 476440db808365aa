"""The one way postdesk calls hooks: awaits async implementations, runs plain ones in threads.

pluggy alone is synchronous: an ``async def`` implementation returns a coroutine (never None,
so ``firstresult`` would stop at it), and one raising implementation stops the others. Every
hook call therefore goes through :class:`Hooks`, which calls each implementation on its own,
with a timeout, counts and logs a failure against the plugin that failed and goes on, and
implements "first answer wins" and "collect every answer" itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import queue
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy
from pluggy import HookImpl

log = logging.getLogger("postdesk.plugins")

SYNC_THREADS = 8  # plain (blocking) implementations run here, never on the event loop
# Hooks the worker waits for (lookups, template variables): they get the lookup timeout.
WAITED_FOR = frozenset(
    {"postdesk_lookup_contact", "postdesk_lookup_orders", "postdesk_template_variables"}
)


@dataclass(frozen=True)
class Timeouts:
    """How long one plugin's calls may take, in seconds: events, and calls waited for."""

    events: float
    lookups: float


class Hooks:
    """Calls the hooks of one plugin manager with a timeout and per-plugin failure isolation."""

    def __init__(
        self,
        manager: pluggy.PluginManager,
        timeout: float,
        lookup_timeout: float | None = None,
        plugin_timeouts: Mapping[str, Timeouts] | None = None,
    ) -> None:
        """Call the implementations registered in ``manager``: an event call gets ``timeout``
        seconds, a lookup or template-variables call ``lookup_timeout`` (default ``timeout``);
        ``plugin_timeouts`` gives some plugins (by name) their own."""
        self.manager = manager
        self.default = Timeouts(timeout, timeout if lookup_timeout is None else lookup_timeout)
        self.plugin_timeouts = dict(plugin_timeouts or {})
        self.failures: Counter[str] = Counter()  # plugin name -> failed or timed-out calls
        self._threads = DaemonThreads(SYNC_THREADS)

    def limit(self, plugin: str, hook: str) -> float:
        """The seconds a call of ``hook`` in ``plugin`` may take."""
        timeouts = self.plugin_timeouts.get(plugin, self.default)
        return timeouts.lookups if hook in WAITED_FOR else timeouts.events

    def longest(self, hook: str) -> float:
        """The longest any implementation of ``hook`` may take (0 when none implements it)."""
        return max((self.limit(i.plugin_name, hook) for i in self.implementations(hook)), default=0)

    def implementations(self, hook: str) -> list[HookImpl]:
        """The implementations of ``hook`` in the order pluggy would call them."""
        caller = getattr(self.manager.hook, hook)
        return list(reversed(caller.get_hookimpls()))

    def implemented(self, hook: str) -> bool:
        """True when at least one plugin implements ``hook``."""
        return bool(self.implementations(hook))

    def hears(self, hook: str, kwargs: Mapping[str, Any]) -> bool:
        """True when some implementation of ``hook`` wants this call: every one does, except
        that a ``postdesk_notify`` implementation whose plugin object has a non-empty
        ``notify_events`` (the events it acts on) wants only those events."""
        implementations = self.implementations(hook)
        if hook != "postdesk_notify":
            return bool(implementations)
        return any(
            not (wanted := getattr(impl.plugin, "notify_events", None)) or kwargs["event"] in wanted
            for impl in implementations
        )

    def takers(self, hook: str, kwargs: Mapping[str, Any]) -> list[Any]:
        """The plugin objects that hear this event call, when each of them takes its events
        into a durable queue of its own inside the event journal's transaction (a callable
        ``take_journaled``, see ``EventJournal``): then the call needs no firing. Empty when
        some implementation that hears it does not, or none hears it."""
        event = kwargs.get("event") if hook == "postdesk_notify" else None
        found = []
        for impl in self.implementations(hook):
            wanted = getattr(impl.plugin, "notify_events", None) if event is not None else None
            if wanted and event not in wanted:
                continue
            if not callable(getattr(impl.plugin, "take_journaled", None)):
                return []
            found.append(impl.plugin)
        return found

    async def fire(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation of an event hook concurrently; results are ignored."""
        await self._all(hook, kwargs)

    async def collect(self, hook: str, **kwargs: Any) -> list[Any]:
        """Every non-None answer, in call order; implementations run concurrently."""
        return [value for ok, value in await self._all(hook, kwargs) if ok and value is not None]

    async def _all(self, hook: str, kwargs: dict[str, Any]) -> list[tuple[bool, Any]]:
        """Every implementation's ``_safe`` outcome; a single one is awaited in the caller's
        task (no task of its own: nothing to run concurrently with)."""
        implementations = self.implementations(hook)
        if len(implementations) == 1:
            return [await self._safe(implementations[0], hook, kwargs)]
        return list(await asyncio.gather(*(self._safe(i, hook, kwargs) for i in implementations)))

    async def first(self, hook: str, **kwargs: Any) -> Any:
        """The first non-None answer in call order, or None.

        All implementations start at once; the answer of an earlier one is awaited before a
        later one is believed, and the rest are cancelled once an answer is found.
        """
        implementations = self.implementations(hook)
        if len(implementations) == 1:  # the only answer: awaited in the caller's task
            ok, value = await self._safe(implementations[0], hook, kwargs)
            return value if ok else None
        tasks = [asyncio.ensure_future(self._safe(impl, hook, kwargs)) for impl in implementations]
        try:
            for task in tasks:
                ok, value = await task
                if ok and value is not None:
                    return value
            return None
        finally:
            _cancel(tasks)

    async def _safe(self, impl: HookImpl, hook: str, kwargs: dict[str, Any]) -> tuple[bool, Any]:
        """(True, answer), or (False, None) after logging and counting a failure or timeout."""
        limit = self.limit(impl.plugin_name, hook)
        try:
            async with asyncio.timeout(limit):  # unlike wait_for, no task of its own per call
                return True, await self._call(impl, kwargs)
        except TimeoutError:
            self.failures[impl.plugin_name] += 1
            log.warning(
                "plugin %s: %s took longer than %.1f s; skipped", impl.plugin_name, hook, limit
            )
        except Exception:
            self.failures[impl.plugin_name] += 1
            log.exception("plugin %s: %s failed; skipped", impl.plugin_name, hook)
        return False, None

    async def _call(self, impl: HookImpl, kwargs: dict[str, Any]) -> Any:
        arguments = {name: kwargs[name] for name in impl.argnames}
        function = impl.function
        if inspect.iscoroutinefunction(function):
            result = await function(**arguments)
        else:
            result = await asyncio.wrap_future(self._threads.submit(function, arguments))
        while inspect.isawaitable(result):  # a plain function may hand back an awaitable
            result = await result
        return result

    def close(self) -> None:
        """Stop the threads once they finish their call; a hung plugin's thread is abandoned."""
        self._threads.close()


class DaemonThreads:
    """A fixed set of daemon threads running plain plugin functions.

    Unlike ``ThreadPoolExecutor``, whose threads the interpreter joins at exit, a thread stuck
    in a hung plugin here never keeps postdesk from exiting.
    """

    def __init__(self, count: int) -> None:
        """Start ``count`` threads."""
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._count = count
        for index in range(count):
            threading.Thread(
                target=self._work, name=f"postdesk-plugin-{index}", daemon=True
            ).start()

    def submit(self, function: Any, arguments: dict[str, Any]) -> concurrent.futures.Future[Any]:
        """Run ``function(**arguments)`` in a thread; the future holds its result."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._calls.put((future, function, arguments))
        return future

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            future, function, arguments = call
            if not future.set_running_or_notify_cancel():
                continue  # the caller gave up (timeout) before the call started
            try:
                future.set_result(function(**arguments))
            except BaseException as error:
                future.set_exception(error)

    def close(self) -> None:
        """Let each thread exit after the call in hand."""
        for _ in range(self._count):
            self._calls.put(None)


_Call = tuple["concurrent.futures.Future[Any]", Any, dict[str, Any]]


def _cancel(tasks: Iterable[asyncio.Future[Any]]) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()
