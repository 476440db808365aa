"""Group commit for SMTP intake: messages whose DATA ends while the spool is being flushed are
made durable together by the next flush, so eight connections share one sync instead of
waiting on eight (the way a database commits a group of transactions with one log flush)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from postdesk.daemon.intake.spool import IncomingFile, Spool

log = logging.getLogger("postdesk.intake")


class GroupCommit:
    """Flushes fully received messages to the spool in groups, one group at a time, off the
    event loop (``Spool.commit_group`` in a thread of its own, so a flush never queues behind
    the outbound sender's work in the loop's shared pool). ``flushes`` counts the flushes so
    far: one per group, however many messages it held."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.flushes = 0
        self._waiting: list[tuple[IncomingFile, asyncio.Future[str | None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="postdesk-spool")

    @property
    def waiting(self) -> int:
        """How many received messages wait for the next flush."""
        return len(self._waiting)

    async def commit(self, incoming: IncomingFile) -> str | None:
        """Hand ``incoming`` over to the next flush and wait for it: the spool id once the
        message is durable, or None when its group failed (then nothing of the group is left
        in the spool). From the call on the flush owns ``incoming``: the caller never
        discards it, even when it is cancelled while waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()
        self._waiting.append((incoming, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush_while_waiting())
        return await future

    async def _flush_while_waiting(self) -> None:
        """Flush what waits, then what arrived meanwhile, until nothing waits."""
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                self.flushes += 1
                spool_ids = await self._flush([incoming for incoming, _future in group])
                for (_incoming, future), spool_id in zip(group, spool_ids, strict=True):
                    if not future.done():  # its connection may have gone meanwhile
                        future.set_result(spool_id)
        finally:
            self._flusher = None

    async def _flush(self, group: list[IncomingFile]) -> list[str] | list[None]:
        """One flush: the group's spool ids, or one None each when it failed (logged once)."""
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self.spool.commit_group, group)
        except Exception as error:  # a disk error or a bug: 451 to each, never 5xx
            log.error(
                "spooling %d message(s) failed, answering 451 to each: %r",
                len(group),
                error,
                exc_info=error,
            )
            return [None] * len(group)
