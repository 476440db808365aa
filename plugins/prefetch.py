"""Looking ahead in the spool: who sent the next messages and what they say, cheaply.

Only the headers are parsed and the start of the body is taken as it is (no MIME decoding):
this feeds lookups that warm the plugins' caches, never anything stored or shown.
"""

from __future__ import annotations

from collections.abc import Container
from email.parser import BytesHeaderParser
from email.policy import default
from email.utils import parseaddr
from pathlib import Path

from postdesk.daemon.intake.spool import peek_waiting

LookupKey = tuple[str, str]  # (sender address, subject and text)


def lookahead(
    waiting: Path, depth: int, limit: int, seen: Container[str] = ()
) -> list[tuple[str, LookupKey]]:
    """(spool file name, lookup key) for the oldest ``depth`` messages waiting in ``waiting``,
    but those named in ``seen`` (looked at already: neither read nor parsed again)."""
    keys: list[tuple[str, LookupKey]] = []
    for name, raw in peek_waiting(waiting, depth, limit, seen):
        head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        headers = BytesHeaderParser(policy=default).parsebytes(head + b"\n\n")
        sender = parseaddr(str(headers.get("From", "")))[1].lower()
        if sender:
            text = f"{headers.get('Subject', '')}\n{body.decode('utf-8', 'replace')}"
            keys.append((name, (sender, text)))
    return keys
