"""Lookups asked by the worker and answered by the plugins process, over a Unix socket.

The plugins process listens on ``<folder>/answers.sock`` (:meth:`FactsFolder.answer_questions`);
each worker keeps one connection to it (:class:`Asker`), writes a question per message (one
JSON line: spool id, sender, text) and goes on with the next message; the answer comes back
on the same connection (one JSON line: spool id, facts) as soon as it is known. Nothing polls
and nothing is written to disk: the socket is a hand-over, never the only copy of anything.
A question in flight when the plugins process dies is asked again of its successor once the
worker has reconnected; one left unanswered only means that the worker looks up itself once
the lookup timeout has passed (``PluginRunner.lookup``).

A connection whose first line is ``LISTEN`` asks nothing: the plugins process posts on it the
facts it prefetched before they were asked (:meth:`FactsFolder.post`, read by
:mod:`postdesk.plugins.board`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from postdesk.plugins.snapshots import json_default

log = logging.getLogger("postdesk.plugins")

Facts = dict[str, Any]
LookupKey = tuple[str, str]  # (sender address, subject and new text)
Answerer = Callable[[LookupKey], "asyncio.Future[Facts]"]

SOCKET = "answers.sock"
LINE_LIMIT = 64 * 1024 * 1024  # the longest question or answer (a message's whole new text)
SHORT_ENOUGH = 100  # bytes of a socket path used as it is
RECONNECT_SECONDS = 0.05  # how soon a worker tries again to reach the plugins process
FRESH_SECONDS = 60.0  # how long an answer is used again (cached, or posted and not yet taken)
LISTEN = b'"listen"\n'  # the first line of a worker's connection that reads postings
POST_BACKLOG = 1024 * 1024  # bytes of postings a listening worker may be behind


def lookup_text(subject: str, new_text: str) -> str:
    """The text the lookups of a message are given: its subject and new text."""
    return f"{subject}\n{new_text}"


@contextlib.contextmanager
def reachable(path: Path) -> Iterator[str]:
    """``path`` as a socket address: itself, or when longer than a socket address may be
    (about 107 bytes on Linux) the same file reached through an open descriptor of its folder."""
    if len(os.fsencode(path)) < SHORT_ENOUGH:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def _line(data: object) -> bytes:
    return json.dumps(data, default=json_default, separators=(",", ":")).encode() + b"\n"


class FactsFolder:
    """The folder of the socket over which the plugins process answers the workers' lookups."""

    def __init__(self, folder: Path) -> None:
        """Keep the socket in ``folder`` (made when the answering starts)."""
        self.folder = folder
        self.socket = folder / SOCKET
        self.listeners: set[asyncio.StreamWriter] = set()  # workers reading postings
        self._postings: list[bytes] = []  # posted in this round of the loop, not yet written

    def post(self, line: bytes) -> None:
        """In the plugins process, on its loop: write the posting ``line``
        (``plugins/board.py``) to every worker listening, except one whose connection is
        ``POST_BACKLOG`` bytes behind (it will ask instead). The postings of one round of the
        loop (the answers of a shop arrive together) go out in one write per worker."""
        if not self._postings:
            asyncio.get_running_loop().call_soon(self._write_postings)
        self._postings.append(line)

    def _write_postings(self) -> None:
        data = b"".join(self._postings)
        self._postings.clear()
        for writer in self.listeners:
            if not writer.is_closing() and writer.transport.get_write_buffer_size() < POST_BACKLOG:
                writer.write(data)

    async def answer_questions(
        self, answer: Answerer, stop: asyncio.Event, concurrency: int
    ) -> None:
        """In the plugins process, until ``stop`` is set: answer every question the workers
        ask with ``answer`` (a future of the facts; at most ``concurrency`` at once), each on
        the connection that asked it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)  # left by a predecessor that died
        self.listeners.clear()
        running: set[asyncio.Future[Facts]] = set()
        room = asyncio.Event()
        room.set()
        talking: set[asyncio.StreamWriter] = set()

        def reply(
            spool_id: object, writer: asyncio.StreamWriter, done: asyncio.Future[Facts]
        ) -> None:
            running.discard(done)
            room.set()
            if done.cancelled() or done.exception() is not None:
                log.error(
                    "plugin lookups failed; notifying without them", exc_info=done.exception()
                )
                facts: Facts = {}
            else:
                facts = done.result()
            if not writer.is_closing():
                writer.write(_line([spool_id, facts]))

        async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            talking.add(writer)
            try:
                while line := await reader.readline():
                    if line == LISTEN:  # a worker reading postings (plugins/board.py)
                        self.listeners.add(writer)
                        continue
                    try:
                        spool_id, email, text = json.loads(line)
                    except ValueError:
                        log.warning("plugin lookups: an unreadable question was ignored")
                        continue
                    while len(running) >= concurrency:
                        room.clear()
                        await room.wait()
                    looking = answer((str(email), str(text)))
                    running.add(looking)
                    looking.add_done_callback(functools.partial(reply, spool_id, writer))
            except (OSError, ValueError) as error:  # a worker that went away
                log.debug("plugin lookups: a worker's connection ended: %s", error)
            finally:
                talking.discard(writer)
                self.listeners.discard(writer)
                writer.close()

        with reachable(self.socket) as address:
            server = await asyncio.start_unix_server(converse, path=address, limit=LINE_LIMIT)
        try:
            await stop.wait()
        finally:
            server.close()
            for writer in list(talking):  # the workers ask the next answering process
                writer.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket)

    def asker(self) -> Asker:
        """A worker's side of the socket: its questions and the answers awaited."""
        return Asker(self.socket)


class Asker:
    """One connection to the plugins process, opened on first use and again after it is lost
    (the questions not answered yet are asked again); lives on the worker's plugins loop and
    is called only there."""

    def __init__(self, path: Path) -> None:
        """Ask the process listening on ``path``."""
        self.path = path
        self._asked: dict[str, tuple[LookupKey, Callable[[Facts], None]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self.link: asyncio.Future[None] | None = None  # keeps the connection, reads answers

    def ask(self, spool_id: str, key: LookupKey, answered: Callable[[Facts], None]) -> None:
        """Ask about ``spool_id``; ``answered(facts)`` is called once the answer is there
        (never after :meth:`withdraw`)."""
        self._asked[spool_id] = (key, answered)
        if self._writer is not None:
            self._writer.write(_line([spool_id, *key]))
        if self.link is None or self.link.done():
            self.link = asyncio.ensure_future(self._keep_linked())

    def withdraw(self, spool_id: str) -> bool:
        """Give up waiting for the answer about ``spool_id`` (a late one is ignored); False
        when it was answered already."""
        return self._asked.pop(spool_id, None) is not None

    def close(self) -> None:
        """Drop the connection and the questions (the worker stops)."""
        self._asked.clear()
        if self.link is not None:
            self.link.cancel()

    async def _keep_linked(self) -> None:
        """While questions are asked: connect (again), ask what is unanswered, hand each
        answer over."""
        while self._asked:
            try:
                with reachable(self.path) as address:
                    reader, writer = await asyncio.open_unix_connection(address, limit=LINE_LIMIT)
            except OSError:  # the plugins process is not (yet, or again) listening
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            self._writer = writer
            try:
                writer.writelines(_line([s, *key]) for s, (key, _a) in self._asked.items())
                while line := await reader.readline():
                    spool_id, facts = json.loads(line)
                    _key, answered = self._asked.pop(spool_id, (None, None))
                    if answered is not None:
                        answered(facts)
            except (OSError, ValueError) as error:
                log.debug("plugin lookups: the connection ended: %s", error)
            finally:
                self._writer = None
                writer.close()
