"""The outbox sender on a thread of its own, beside a worker that runs in the same process.

``postdesk ingest`` and ``quarantine replay`` without a running ``serve`` process the spool
themselves; this sends the mail they commit while they do, as ``serve`` would: the worker wakes
it after each committed batch, and once the worker is done it sends everything still due, then
stops. Mail the relay refuses for now keeps its retry schedule in the outbox for the next
``serve``; a relay that hangs is given ``patience`` seconds after the worker finished, then the
sender is cancelled: the rows it had claimed stay leased until their lease runs out, then the
next ``serve`` sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import Settings
from postdesk.daemon.outbound.sender import OutboxSender

log = logging.getLogger("postdesk.outbox")

IDLE_POLL_SECONDS = 0.5  # besides the wake-ups: mail committed by anyone else is sent too


class SenderBeside:
    """Run an :class:`OutboxSender` on a thread with its own event loop until :meth:`finish`."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        *,
        on_alert: Callable[[str, dict[str, object]], None] | None = None,
    ) -> None:
        """Send with ``settings.outbound`` from ``factory``; ``on_alert`` as for
        :class:`OutboxSender`."""
        self.sender = OutboxSender(settings, factory, on_alert=on_alert)
        self._finishing = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._woken = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="outbox", daemon=True)

    def start(self) -> None:
        """Start the thread; return once it can be woken."""
        self._thread.start()
        self._ready.wait()

    def wake(self) -> None:
        """Mail was committed: send it now (safe from any thread; repeated calls coalesce)."""
        if self._woken or self._loop is None:
            return
        self._woken = True
        self._loop.call_soon_threadsafe(self._wake_sender)

    def finish(self, patience: float) -> None:
        """Send what is due now, waiting at most ``patience`` seconds, then cancel it (a relay
        that does not answer) and stop the thread."""
        self._finishing.set()
        self.wake()
        self._thread.join(patience)
        if self._thread.is_alive() and self._loop is not None and self._task is not None:
            log.warning("the relay did not take the mail within %.0f s; serve sends it", patience)
            self._loop.call_soon_threadsafe(self._task.cancel)
            self._thread.join()

    def _wake_sender(self) -> None:
        self._woken = False
        self.sender.wake()

    def _main(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(self._send())

    async def _send(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._ready.set()
        stop = asyncio.Event()  # never set: cancelling stops this loop
        try:
            while True:
                finishing = self._finishing.is_set()
                try:
                    handled = await self.sender.send_due(stop)
                except Exception as error:  # the database is away: the mail stays in the outbox
                    log.warning("outbox not sent now, it waits for the next run: %s", error)
                    if finishing:
                        return
                    handled = 0
                if finishing and not handled:
                    return
                if not handled:
                    await self.sender.nap(stop, IDLE_POLL_SECONDS)
        finally:
            await self.sender.close()
