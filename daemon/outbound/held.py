"""Held mail: written in the message's transaction, completed and released after it commits.

An agent notification waits for the plugins' lookups (contact, orders) without holding back
the message's transaction: it is queued with ``held_until`` (:func:`outbox.enqueue`), a due
time past the lookups' timeout, and :func:`complete` renders it again with the facts and makes
it due now (:func:`render_held` then :func:`release`, the rendering outside the transaction
where it can be). Nothing else is needed for a crash in between: the row, complete but for the
facts, simply becomes due at ``held_until`` and is sent as it is. :func:`complete` only
rewrites a row that is still held (due later, never claimed or tried), so a mail is released
once and never changes while it is being sent or after.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, case, update
from sqlalchemy.orm import Session

from postdesk.daemon.outbound.compose import compose
from postdesk.daemon.services import Services
from postdesk.models.schema import Message, OutboxItem

HOLD_MARGIN_SECONDS = 30.0  # past the lookups' timeout: time to write the completed mail
_OUTBOX = cast(Table, OutboxItem.__table__)
_MESSAGE = cast(Table, Message.__table__)
# Built once (each completion passes only its values): releases a row that is still held.
_RELEASE = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id == bindparam("item"),
        _OUTBOX.c.status == "pending",
        _OUTBOX.c.attempts == 0,
        _OUTBOX.c.claimed_by.is_(None),
        _OUTBOX.c.next_attempt_at > bindparam("now"),  # still held
    )
    .values(  # the bytes go here only for a row that keeps them itself (queued before 0014)
        raw=case((_OUTBOX.c.message_pk.is_(None), bindparam("raw")), else_=_OUTBOX.c.raw),
        next_attempt_at=bindparam("now"),
    )
)
_COPY = (  # the ticket's copy of the mail, as released: the bytes the sender sends
    update(_MESSAGE)
    .where(_MESSAGE.c.message_id == bindparam("mid"), _MESSAGE.c.direction == "out")
    .values(
        subject=bindparam("subject"),
        text=bindparam("text"),
        new_text=bindparam("text"),
        raw=bindparam("raw"),
    )
)


@dataclass(frozen=True)
class HeldMail:
    """What rendering a held mail again takes: its row, template, context and headers."""

    item_id: int
    message_id: str
    template: str
    context: Mapping[str, object]
    to: Sequence[str]
    in_reply_to: str | None
    references: Sequence[str]
    attachments: Sequence[tuple[str, str, bytes]]


@dataclass(frozen=True)
class RenderedHeld:
    """A held mail rendered again with its facts, ready to be released."""

    item_id: int
    message_id: str
    subject: str
    text: str
    raw: bytes


def render_held(services: Services, mail: HeldMail, changes: Mapping[str, object]) -> RenderedHeld:
    """``mail`` rendered and composed again with ``changes`` to its context (no database:
    done before the transaction that releases it, which then holds the write lock only for
    its two UPDATEs)."""
    rendered = services.templates.render(mail.template, {**mail.context, **changes})
    raw = compose(
        services,
        to=mail.to,
        subject=rendered.subject,
        rendered=rendered,
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to,
        references=mail.references,
        auto=True,
        attachments=mail.attachments,
    )
    return RenderedHeld(mail.item_id, mail.message_id, rendered.subject, rendered.text, raw)


def release(session: Session, services: Services, mail: RenderedHeld) -> bool:
    """Release the rendered ``mail`` to be sent now, with the ticket's copy updated; False
    (nothing written) when it was released already."""
    connection = session.connection()  # Core statements: no ORM layer between
    released = connection.execute(
        _RELEASE, {"item": mail.item_id, "now": services.clock(), "raw": mail.raw}
    )
    if not cast(CursorResult[Any], released).rowcount:
        return False
    connection.execute(
        _COPY,
        {"mid": mail.message_id, "subject": mail.subject, "text": mail.text, "raw": mail.raw},
    )
    return True


def complete(
    session: Session, services: Services, mail: HeldMail, changes: Mapping[str, object]
) -> bool:
    """Render ``mail`` with ``changes`` to its context and release it to be sent now, with the
    ticket's copy updated; False (nothing written) when it was released already."""
    return release(session, services, render_held(services, mail, changes))
