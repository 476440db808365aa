"""Step: make processing idempotent; the same message delivered twice is stored once.

The key is a hash of the sender's address (the From header, not the envelope, which differs
between SMTP and IMAP), the Message-ID and the body, so a copy that only gained trace headers on
its way is the same message, while two people's mail under one Message-ID and body (a reused
template, a forged or sloppy Message-ID) is stored twice. A different body under a reused
Message-ID is stored and flagged as a possible duplicate.

The same statement counts the tickets the sender opened within the flood window, for
``steps.flood``, and reads what the caps on automatic mail read of a sender who is not an
agent (``outbound.caps.Counted``), for the acknowledgement of a new ticket: two statements
fewer for every message that opens a ticket.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import bindparam, case, literal, literal_column, select, true

from postdesk.daemon.outbound import caps
from postdesk.daemon.outbound.compose import envelope_address
from postdesk.daemon.pipeline import Duplicate, MessageContext
from postdesk.daemon.steps.flood import NEW_TICKETS
from postdesk.daemon.store.bounces import changes_seen
from postdesk.daemon.store.direct import Direct
from postdesk.models.schema import Message, Ticket

_CHUNK = 1 << 20
_CR = ord("\r")
_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c")  # what bytes.rstrip() removes


def run(ctx: MessageContext) -> None:
    """Raise Duplicate when this message is stored already; flag reused Message-IDs; count the
    sender's recent new tickets (``ctx.recent_new_tickets``).

    One query: both keys hash the Message-ID, so every stored copy has the same Message-ID;
    rows under it that match a key come first. The key of older releases (``legacy``) is
    worked out only when a row under the Message-ID matches the current key not: then the
    query runs again with it (a new message's Message-ID has no row).
    """
    sender = ctx.sender  # the From address: the same whichever way the mail came
    ctx.dedupe_key = dedupe_key(sender, ctx.parsed.message_id, ctx.raw)
    settings = ctx.services.settings
    window = timedelta(minutes=settings.processing.flood_window_minutes)
    now = ctx.services.clock()
    values = {
        "message_id": ctx.parsed.message_id,
        "key": ctx.dedupe_key,
        "legacy": None,  # matches no row
        "sender": sender,
        "since": now - window,
    }
    recipient = _recipient(ctx) if settings.agent(sender) is None else None
    statement = _STORED
    if recipient is not None:  # an acknowledgement may go to the sender: the caps' figures too
        values.update(caps.count_values(recipient, now))
        statement = _STORED_COUNTING
    row = statement.one(ctx.connection, values)
    if row[1] is not None and not row[2]:
        values["legacy"] = dedupe_key(None, ctx.parsed.message_id, ctx.raw)
        row = statement.one(ctx.connection, values)
    recent, number, same = row[:3]
    if same:
        raise Duplicate(f"already stored in ticket #{number}")
    ctx.possible_duplicate = number is not None
    ctx.recent_new_tickets = recent
    if recipient is not None:
        changes = changes_seen(ctx.connection)
        ctx.counted = caps.Counted(recipient, row[3], row[4], row[5], changes)


def _recipient(ctx: MessageContext) -> str | None:
    """The sender as the envelope recipient of mail to it (None when it cannot be one)."""
    try:
        return envelope_address(ctx.sender)
    except ValueError:
        return None


_SAME = (Message.dedupe_key == bindparam("key")) | (
    (Message.dedupe_key == bindparam("legacy")) & (Message.author == bindparam("sender"))
)
# Built once: the stored message with this Message-ID, one with the same key first ...
_FOUND = (
    select(Ticket.number, case((_SAME, 1), else_=0).label("same"))
    .join(Message)
    .where(Message.message_id == bindparam("message_id"))
    .order_by(literal_column("same").desc())
    .limit(1)
    .subquery()
)
# ... (none: NULLs) beside the number of tickets the sender opened since ``since``: one row.
_STORED = Direct(
    select(
        NEW_TICKETS.scalar_subquery().label("recent"), _FOUND.c.number, _FOUND.c.same
    ).outerjoin_from(select(literal(1)).subquery(), _FOUND, true())
)
# ... and the caps' figures of the sender as a recipient (their one row joined).
_STORED_COUNTING = Direct(
    select(
        NEW_TICKETS.scalar_subquery().label("recent"),
        _FOUND.c.number,
        _FOUND.c.same,
        *caps.RECIPIENT_COUNTS.c,
    ).select_from(
        select(literal(1)).subquery().outerjoin(_FOUND, true()).join(caps.RECIPIENT_COUNTS, true())
    )
)


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
