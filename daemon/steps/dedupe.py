"""Step: make processing idempotent; the same message delivered twice is stored once.

The key is a hash of the Message-ID and the body, so a copy that only gained trace headers on
its way (SMTP versus IMAP) is the same message, while a different body under a reused
Message-ID is stored and flagged as a possible duplicate.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from postdesk.daemon.pipeline import Duplicate, MessageContext
from postdesk.models.schema import Message, Ticket


def run(ctx: MessageContext) -> None:
    """Raise Duplicate when this message is stored already; flag reused Message-IDs."""
    ctx.dedupe_key = dedupe_key(ctx.parsed.message_id, ctx.raw)
    known = ctx.session.execute(
        select(Ticket.number).join(Message).where(Message.dedupe_key == ctx.dedupe_key)
    ).scalar_one_or_none()
    if known is not None:
        raise Duplicate(f"already stored in ticket #{known}")
    reused = ctx.session.execute(
        select(Message.id).where(Message.message_id == ctx.parsed.message_id).limit(1)
    ).scalar_one_or_none()
    ctx.possible_duplicate = reused is not None


def dedupe_key(message_id: str, raw: bytes) -> str:
    """sha256 of the Message-ID and the body with line endings and trailing space normalised."""
    body = _body(raw).replace(b"\r\n", b"\n").rstrip()
    return hashlib.sha256(message_id.encode("utf-8", "replace") + b"\0" + body).hexdigest()


def _body(raw: bytes) -> bytes:
    for separator in (b"\r\n\r\n", b"\n\n"):
        _head, found, body = raw.partition(separator)
        if found:
            return body
    return b""
