"""Looking ahead in the spool: the lookups of the next messages, done before the worker's turn.

The plugins process of ``serve`` (or ``ingest``, beside its worker) reads the messages
waiting in the spool, parsed as the worker will parse them (the first ``limit`` bytes of each),
so its lookups have the very keys the worker's own would have, and leaves their answers in a
:class:`~postdesk.plugins.facts.FactsFolder` for the worker (see ``PluginRunner.start_looking_ahead``). The worker then
spends no time of its own on contacts and orders: a slow shop answers many messages at once
in another process.
"""

from __future__ import annotations

import functools
from collections.abc import Container
from pathlib import Path

from postdesk.daemon.intake.spool import peek_waiting
from postdesk.daemon.mail.parse import MessageRejected, parse_message
from postdesk.plugins.facts import Upcoming, Waiting

LOOK_AHEAD_DEPTH = 64  # spooled messages looked ahead at, oldest first
PEEK_BYTES = 65536  # of each: the headers and the start of the text


def waiting_in(folder: Path) -> Upcoming:
    """What the look-ahead reads: the messages waiting in the spool folder ``folder``."""
    return functools.partial(lookahead, folder, LOOK_AHEAD_DEPTH, PEEK_BYTES)


def lookahead(waiting: Path, depth: int, limit: int, seen: Container[str] = ()) -> list[Waiting]:
    """(spool file name, spool id, lookup key) for the oldest ``depth`` messages waiting in
    ``waiting``, but those named in ``seen`` (looked at already: neither read nor parsed again)."""
    keys: list[Waiting] = []
    for name, raw in peek_waiting(waiting, depth, limit, seen):
        try:
            parsed = parse_message(raw)
        except MessageRejected:
            continue  # the worker will hold it: nothing to look up
        if parsed.from_addr:
            key = (parsed.from_addr.lower(), lookup_text(parsed.subject, parsed.new_text))
            keys.append((name, spool_id_of(name), key))
    return keys


def lookup_text(subject: str, new_text: str) -> str:
    """The text the lookups of a message are given: its subject and new text."""
    return f"{subject}\n{new_text}"


def spool_id_of(name: str) -> str:
    """The spool id in a waiting file's name (``<spool id>.<attempts>.eml``)."""
    return name.partition(".")[0]
