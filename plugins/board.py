"""Facts posted before they are asked: the worker reads them on its own thread, at no wait.

Under serve the plugins process prefetches the lookups of the messages waiting in the spool
(:mod:`postdesk.plugins.prefetch`). For a message whose prefetch key is exactly the question
the worker will ask (a plain-text message), it posts the answer, as soon as it has it, to every
worker listening: one JSON line ``[spool id, digest of the key, facts]`` on a connection the
worker opened to the lookup socket with the line ``"listen"`` (``FactsFolder.answer_questions``).
The worker's :class:`FactsBoard` reads what has come on that connection without blocking, from
the pipeline's own thread, when a message's lookups start: a posted answer for that message
and that key is its facts, so no question is asked, no other thread is woken and nothing is
waited for. Anything else (nothing posted yet, another key, no plugins process) goes the way
of a question (``PluginRunner.lookup``). A posting is a hint, never the only copy of anything:
a worker that was not listening, or whose connection was too far behind, simply asks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from postdesk.plugins.facts import (
    FRESH_SECONDS,
    LISTEN,
    RECONNECT_SECONDS,
    Facts,
    LookupKey,
    reachable,
)

log = logging.getLogger("postdesk.plugins")

KEPT = 4096  # postings kept unread (for messages other workers take, or not reached yet)
READ_BYTES = 256 * 1024
CONNECT_SECONDS = 0.5  # connecting to a Unix socket is immediate unless its backlog is full


def key_digest(key: LookupKey) -> str:
    """A short digest of a lookup key (sender and text), for postings to name their key by."""
    email, text = key
    return hashlib.blake2b(f"{email}\0{text}".encode(), digest_size=16).hexdigest()


def posting(spool_id: str, key: LookupKey, facts: Facts) -> bytes:
    """The line the plugins process posts: ``facts`` for the message ``spool_id`` asked with
    ``key``."""
    return json.dumps([spool_id, key_digest(key), facts], separators=(",", ":")).encode() + b"\n"


class FactsBoard:
    """A worker's reading of the postings (see the module's docstring): used only on the
    thread that processes messages, never blocking it."""

    def __init__(self, path: Path) -> None:
        """Read the postings of the plugins process listening on ``path``."""
        self.path = path
        self._socket: socket.socket | None = None
        self._partial = bytearray()  # the start of a line not read to its end yet
        # spool id -> (key digest, facts, when read): the oldest first
        self._posted: OrderedDict[str, tuple[str, Facts, float]] = OrderedDict()
        self._next_try = 0.0  # when to try connecting again after a failure

    def take(self, spool_id: str, key: LookupKey) -> Facts | None:
        """The facts posted for ``spool_id`` asked with ``key``, else None (nothing posted
        yet, for another key, or longer than ``FRESH_SECONDS`` ago, as an answer is cached):
        reads what has come, never waits."""
        self._read()
        posted = self._posted.pop(spool_id, None)
        if posted is None or posted[0] != key_digest(key):
            return None
        _digest, facts, read_at = posted
        return facts if time.monotonic() - read_at < FRESH_SECONDS else None

    def close(self) -> None:
        """Close the connection (the worker stops)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _read(self) -> None:
        """Take in every complete posting that has come (connecting first when need be)."""
        connection = self._socket if self._socket is not None else self._connect()
        if connection is None:
            return
        while True:
            try:
                data = connection.recv(READ_BYTES)
            except BlockingIOError:
                break
            except OSError as error:
                self._lost(f"{error}")
                break
            if not data:
                self._lost("closed by the plugins process")
                break
            self._partial += data
        end = self._partial.rfind(b"\n")
        if end < 0:
            return
        lines = bytes(self._partial[:end]).split(b"\n")
        del self._partial[: end + 1]
        for line in lines:
            self._keep(line)

    def _keep(self, line: bytes) -> None:
        """Keep one posting (the oldest unread go first beyond ``KEPT``)."""
        try:
            spool_id, digest, facts = json.loads(line)
        except (ValueError, TypeError):  # not JSON, or not three things
            log.warning("plugin lookups: an unreadable posting was ignored")
            return
        self._posted[str(spool_id)] = (str(digest), _facts(facts), time.monotonic())
        while len(self._posted) > KEPT:
            self._posted.popitem(last=False)

    def _connect(self) -> socket.socket | None:
        """A listening connection to the plugins process, or None when it cannot be reached
        now (tried again after ``RECONNECT_SECONDS``)."""
        if time.monotonic() < self._next_try:
            return None
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.settimeout(CONNECT_SECONDS)
            with reachable(self.path) as address:
                connection.connect(address)
            connection.sendall(LISTEN)
            connection.setblocking(False)
        except OSError:  # not (yet, or again) listening
            connection.close()
            self._next_try = time.monotonic() + RECONNECT_SECONDS
            return None
        self._socket = connection
        return connection

    def _lost(self, why: str) -> None:
        """Drop a broken connection (and the line it was cut in); connect again later."""
        log.debug("plugin lookups: the postings' connection ended: %s", why)
        self.close()
        self._partial.clear()
        self._next_try = time.monotonic() + RECONNECT_SECONDS


def _facts(value: Any) -> Facts:
    """A posting's facts: a JSON object, else none."""
    return value if isinstance(value, dict) else {}
