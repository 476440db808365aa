"""The outbox sender on a thread of its own, beside a worker that runs in the same process.

``postdesk ingest`` and ``quarantine replay`` without a running ``serve`` process the spool
themselves; this sends the mail they commit while they do, as ``serve`` would: the worker wakes
it after each committed batch, and once the worker is done it sends everything still due, then
stops. Mail the relay refuses for now keeps its retry schedule in the outbox for the next
``serve``; a relay that hangs is given ``patience`` seconds after the worker finished, then the
sender stops and releases what it had not reached (its leases let any other sender take it).
"""

from __future__ import annotations

import asyncio
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
        owner: str = "",
    ) -> None:
        """Send with ``settings.outbound`` from ``factory``; ``on_alert`` and ``owner`` as for
        :class:`OutboxSender`."""
        self.sender = OutboxSender(settings, factory, on_alert=on_alert, owner=owner)
        self._finishing = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
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
        """Send what is due now, waiting at most ``patience`` seconds, then stop the thread."""
        self._finishing.set()
        self.wake()
        self._thread.join(patience)
        if self._thread.is_alive() and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join()

    def _wake_sender(self) -> None:
        self._woken = False
        self.sender.wake()

    def _main(self) -> None:
        asyncio.run(self._send())

    async def _send(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            while not self._stop.is_set():
                finishing = self._finishing.is_set()
                try:
                    handled = await self.sender.send_due(self._stop)
                except Exception as error:  # the database is away: the mail stays in the outbox
                    log.warning("outbox not sent now, it waits for the next run: %s", error)
                    if finishing:
                        return
                    handled = 0
                if finishing and not handled:
                    return
                if not handled:
                    await self.sender.nap(self._stop, IDLE_POLL_SECONDS)
        finally:
            await self.sender.close()
