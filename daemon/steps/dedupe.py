"""Step: make processing idempotent; the same message delivered twice is stored once.

The key is a hash of the sender's address (the From header, not the envelope, which differs
between SMTP and IMAP), the Message-ID and the body, so a copy that only gained trace headers on
its way is the same message, while two people's mail under one Message-ID and body (a reused
template, a forged or sloppy Message-ID) is stored twice. A different body under a reused
Message-ID is stored and flagged as a possible duplicate.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from postdesk.daemon.pipeline import Duplicate, MessageContext
from postdesk.models.schema import Message, Ticket

_CHUNK = 1 << 20
_CR = ord("\r")
_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c")  # what bytes.rstrip() removes


def run(ctx: MessageContext) -> None:
    """Raise Duplicate when this message is stored already; flag reused Message-IDs."""
    sender = ctx.sender  # the From address: the same whichever way the mail came
    ctx.dedupe_key = dedupe_key(sender, ctx.parsed.message_id, ctx.raw)
    legacy = dedupe_key(None, ctx.parsed.message_id, ctx.raw)
    known = ctx.session.execute(
        select(Ticket.number)
        .join(Message)
        .where(
            (Message.dedupe_key == ctx.dedupe_key)
            | ((Message.dedupe_key == legacy) & (Message.author == sender))
        )
        .limit(1)
    ).scalar_one_or_none()
    if known is not None:
        raise Duplicate(f"already stored in ticket #{known}")
    reused = ctx.session.execute(
        select(Message.id).where(Message.message_id == ctx.parsed.message_id).limit(1)
    ).scalar_one_or_none()
    ctx.possible_duplicate = reused is not None


def dedupe_key(sender: str | None, message_id: str, raw: bytes) -> str:
    """sha256 of the sender, the Message-ID and the body (line endings, trailing space normalised).

    ``sender=None`` gives the key of releases before the sender counted, still found for
    messages stored by them (with the same author). The body is hashed in pieces, never
    copied whole (R-36).
    """
    head = message_id if sender is None else f"{sender.lower()}\0{message_id}"
    digest = hashlib.sha256(head.encode("utf-8", "replace") + b"\0")
    start, end = _body_start(raw), len(raw)
    while end > start and raw[end - 1] in _WHITESPACE:  # bytes.rstrip()
        end -= 1
    view = memoryview(raw)
    while start < end:
        stop = min(start + _CHUNK, end)
        if stop < end and raw[stop - 1] == _CR:  # keep a CRLF in one piece
            stop -= 1
        digest.update(view[start:stop].tobytes().replace(b"\r\n", b"\n"))
        start = stop
    return digest.hexdigest()


def _body_start(raw: bytes) -> int:
    """Where the body begins (after the first blank line), else the end."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        found = raw.find(separator)
        if found >= 0:
            return found + len(separator)
    return len(raw)
