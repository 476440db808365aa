"""Looking ahead in the spool: who sent the next messages and what they say.

Each message is parsed as the worker will parse it (the first ``limit`` bytes of it), so the
lookups started here have the very keys the worker's own lookups will have: when the worker
reaches a message, its facts are usually there already (see ``PluginRunner.prefetch``).
"""

from __future__ import annotations

from collections.abc import Container
from pathlib import Path

from postdesk.daemon.intake.spool import peek_waiting
from postdesk.daemon.mail.parse import MessageRejected, parse_message

LookupKey = tuple[str, str]  # (sender address, subject and new text)


def lookahead(
    waiting: Path, depth: int, limit: int, seen: Container[str] = ()
) -> list[tuple[str, LookupKey]]:
    """(spool file name, lookup key) for the oldest ``depth`` messages waiting in ``waiting``,
    but those named in ``seen`` (looked at already: neither read nor parsed again)."""
    keys: list[tuple[str, LookupKey]] = []
    for name, raw in peek_waiting(waiting, depth, limit, seen):
        try:
            parsed = parse_message(raw)
        except MessageRejected:
            continue  # the worker will hold it: nothing to look up
        if parsed.from_addr:
            keys.append(
                (name, (parsed.from_addr.lower(), lookup_text(parsed.subject, parsed.new_text)))
            )
    return keys


def lookup_text(subject: str, new_text: str) -> str:
    """The text the lookups of a message are given: its subject and new text."""
    return f"{subject}\n{new_text}"
