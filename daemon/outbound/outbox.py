"""The durable outbox: outgoing mail is written in the same transaction as the change causing it.

:func:`enqueue` renders, signs and composes one mail and adds an ``OutboxItem`` row plus the
ticket's outgoing ``Message`` row in the caller's transaction; :func:`enqueue_all` does so for
several mails with one INSERT per table. It never commits; the sender
(:mod:`postdesk.daemon.outbound.sender`) delivers committed rows later. Automatic mail is refused
here, before anything is written, when the recipient is bouncing or over the rate limits, or
when all outside addresses together had ``outbound.auto_total_per_hour`` automatic mails within
the hour (R-43, :mod:`postdesk.daemon.outbound.caps`); the agents then get one alert per hour.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import make_msgid
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

from postdesk.daemon.config import Settings
from postdesk.daemon.outbound import caps
from postdesk.daemon.outbound.compose import compose, envelope_address
from postdesk.daemon.outbound.context import helpdesk_info
from postdesk.daemon.outbound.templating import AGENT_AUTO_CAP, Rendered
from postdesk.daemon.services import Services
from postdesk.daemon.store.db import bound_rows, insert_rows, typed_bind
from postdesk.daemon.store.direct import Direct
from postdesk.models.schema import Message, OutboxItem, Ticket

log = logging.getLogger("postdesk.outbox")

CHANNEL = "outbox"
AUTO_CAP = "auto_cap"  # kind of the agents' alert that automatic mail was stopped
# Built once; each mail passes only its values (building statements per mail costs more).
_OUTBOX = cast(Table, OutboxItem.__table__)
_MESSAGE = cast(Table, Message.__table__)
# The outbox rows' columns, all set by _insert_items but message_pk: that is the ticket's outgoing
# message keeping the mail's bytes, found by the Message-ID the row passes as ``copy_of`` (None:
# the row keeps its bytes itself), so that the messages are written without RETURNING (one
# executemany) and no id makes a round trip through Python.
_ITEM_COLUMNS = (
    "ticket_id", "kind", "recipient", "recipients", "envelope_from", "message_id", "auto", "raw",
    "status", "attempts", "next_attempt_at", "created_at", "claimed_until", "claimed_by",
    "last_error", "sent_at",
)  # fmt: skip


def _copy_of(key: str) -> Any:
    """The id of the outgoing message with the Message-ID bound as ``key`` (a scalar subquery)."""
    return (
        select(_MESSAGE.c.id)
        .where(_MESSAGE.c.message_id == bindparam(key), _MESSAGE.c.direction == "out")
        .limit(1)
        .scalar_subquery()
    )


@functools.cache
def _insert_items_of(count: int) -> Direct:
    """The INSERT of ``count`` outbox rows in one statement, run on the DBAPI cursor
    (store.direct), row ``i``'s values bound as ``<column>_<i>`` and ``copy_of_<i>``. Each row
    comes back with its (freshly minted, unique) Message-ID, since the order of RETURNING rows
    is not that of the VALUES."""
    rows = [
        {name: typed_bind(_OUTBOX, name, i) for name in _ITEM_COLUMNS}
        | {"message_pk": _copy_of(f"copy_of_{i}")}
        for i in range(count)
    ]
    return Direct(
        insert(_OUTBOX)
        .values(rows)
        .returning(_OUTBOX.c.message_id, _OUTBOX.c.id, _OUTBOX.c.message_pk)
    )


def enqueue(
    session: Session,
    services: Services,
    *,
    ticket: Ticket,
    kind: str,
    to: Sequence[str],
    template: str,
    context: Mapping[str, object],
    in_reply_to: str | None,
    references: Sequence[str],
    auto: bool,
    cc: Sequence[str] = (),
    agent: str | None = None,
    from_name: str | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    internal_copy: bool = False,
    rendered: Rendered | None = None,
    held_until: datetime | None = None,
) -> OutboxItem | None:
    """Queue one mail about ``ticket`` in the caller's session (no commit) and record it.

    Helpdesk addresses are dropped from the recipients. Returns None, writing nothing, when no
    valid recipient is left, or when ``auto`` is set and the first recipient is bouncing or
    over ``outbound.auto_per_recipient_10min`` / ``auto_per_recipient_day`` /
    ``auto_total_per_hour`` (the last also alerts the agents, once an hour). ``rendered``,
    when given, is ``template`` already rendered with ``context``. ``held_until``: the mail
    is not sent before then unless :func:`postdesk.daemon.outbound.held.complete` releases it.
    """
    mail = Mail(
        kind=kind,
        to=to,
        template=template,
        context=context,
        in_reply_to=in_reply_to,
        references=references,
        auto=auto,
        cc=cc,
        agent=agent,
        from_name=from_name,
        attachments=attachments,
        internal_copy=internal_copy,
        rendered=rendered,
        held_until=held_until,
    )
    [row] = _queue(session, services, ticket, [mail])
    return None if row is None else OutboxItem(**row)


@dataclass(frozen=True)
class Mail:
    """One mail about a ticket, for :func:`enqueue_all`: the arguments of :func:`enqueue`."""

    kind: str
    to: Sequence[str]
    template: str
    context: Mapping[str, object]
    in_reply_to: str | None
    references: Sequence[str]
    auto: bool
    cc: Sequence[str] = ()
    agent: str | None = None
    from_name: str | None = None
    attachments: Sequence[tuple[str, str, bytes]] = ()
    internal_copy: bool = False
    rendered: Rendered | None = None
    held_until: datetime | None = None  # not sent before then unless released (outbound.held)
    counted: caps.Counted | None = None  # the caps' figures of the recipient, read before


class Queued(NamedTuple):
    """A mail :func:`enqueue_all` queued: its outbox row and Message-ID."""

    id: int
    message_id: str


def enqueue_all(
    session: Session, services: Services, ticket: Ticket, mails: Sequence[Mail]
) -> list[Queued | None]:
    """Queue ``mails`` about ``ticket`` as :func:`enqueue` queues each, writing their rows
    together: one INSERT per table for the lot. Returns what was queued, in order (None for a
    mail not queued).

    An automatic mail to an outside address is checked against the caps after the mails
    before it are written, so they count.
    """
    return [
        None if row is None else Queued(int(row["id"]), str(row["message_id"]))
        for row in _queue(session, services, ticket, mails)
    ]


def _queue(
    session: Session, services: Services, ticket: Ticket, mails: Sequence[Mail]
) -> list[dict[str, Any] | None]:
    """:func:`enqueue_all`, returning the outbox rows' values (with ``id``)."""
    settings = services.settings
    now = services.clock()
    items: list[dict[str, Any] | None] = []
    unwritten: list[tuple[int, _Outgoing]] = []  # (position in items, composed mail)

    def write() -> None:
        written = _record(session, settings, ticket, [out for _, out in unwritten], now)
        for (position, _), item in zip(unwritten, written, strict=True):
            items[position] = item
        unwritten.clear()

    for mail in mails:
        items.append(None)
        recipients = _recipients(settings, mail.kind, f"ticket {ticket.number}", mail.to, mail.cc)
        if recipients is None:
            continue
        if unwritten and mail.auto and settings.agent(recipients[2][0]) is None:
            write()
        outgoing = _outgoing(session, services, ticket, mail, recipients, now)
        if outgoing is not None:
            unwritten.append((len(items) - 1, outgoing))
    if unwritten:
        write()
    return items


def _outgoing(
    session: Session,
    services: Services,
    ticket: Ticket,
    mail: Mail,
    recipients: tuple[list[str], list[str], list[str]],
    now: datetime,
) -> _Outgoing | None:
    """``mail`` rendered and composed, or None when the caps refuse it or it cannot be built."""
    to_list, cc_list, envelope = recipients
    refusal = (
        caps.refusal(session, services.settings, envelope[0], now, mail.counted)
        if mail.auto
        else None
    )
    if refusal is not None:
        log.warning(
            "%s to %s for ticket %s not sent: %s", mail.kind, envelope[0], ticket.number, refusal
        )
        if refusal == caps.TOTAL_CAP:
            _alert_total_cap(session, services, now)
        return None
    rendered = mail.rendered
    if rendered is None:
        rendered = services.templates.render(mail.template, mail.context)
    message_id = services.tokens.mint(ticket.number, mail.agent)
    try:
        raw = compose(
            services,
            to=to_list,
            cc=cc_list,
            subject=rendered.subject,
            rendered=rendered,
            message_id=message_id,
            in_reply_to=mail.in_reply_to,
            references=mail.references,
            auto=mail.auto,
            from_name=mail.from_name,
            attachments=mail.attachments,
        )
    except ValueError as exc:
        log.error("%s %s for ticket %s not sent: %s", message_id, mail.kind, ticket.number, exc)
        return None
    log.info("%s %s to %s for ticket %s queued", message_id, mail.kind, envelope[0], ticket.number)
    due = mail.held_until or now
    return _Outgoing(
        mail.kind, envelope, message_id, mail.auto, raw, rendered, mail.internal_copy, due
    )


def enqueue_notice(
    session: Session,
    services: Services,
    *,
    kind: str,
    to: Sequence[str],
    template: str,
    context: Mapping[str, object],
) -> OutboxItem | None:
    """Queue one automatic mail about no single ticket (e.g. a digest); no commit.

    Only the outbox row is written: there is no ticket to record the mail on. The same
    recipient rules and automatic-mail caps as :func:`enqueue` apply (agents are exempt).
    """
    settings = services.settings
    now = services.clock()
    recipients = _recipients(settings, kind, "no ticket", to, ())
    if recipients is None:
        return None
    to_list, _cc, envelope = recipients
    refusal = caps.refusal(session, settings, envelope[0], now)
    if refusal is not None:
        log.warning("%s to %s not sent: %s", kind, envelope[0], refusal)
        return None
    rendered = services.templates.render(template, context)
    domain = settings.helpdesk.address.rpartition("@")[2]
    message_id = make_msgid("pd-" + kind.replace("_", "-"), domain=domain)
    try:
        raw = compose(
            services,
            to=to_list,
            subject=rendered.subject,
            rendered=rendered,
            message_id=message_id,
            in_reply_to=None,
            references=[],
            auto=True,
        )
    except ValueError as exc:
        log.error("%s %s not sent: %s", message_id, kind, exc)
        return None
    outgoing = _Outgoing(kind, envelope, message_id, True, raw, rendered, True, now)
    [row] = _insert_items(session, settings, None, [outgoing], now)
    log.info("%s %s to %s queued", message_id, kind, envelope[0])
    return OutboxItem(**row)


@dataclass(frozen=True)
class _Outgoing:
    """One composed mail, before it becomes rows."""

    kind: str
    envelope: list[str]
    message_id: str
    auto: bool
    raw: bytes
    rendered: Rendered
    internal: bool
    due: datetime  # when the sender may take it: now, or later for a held mail


def _record(
    session: Session, settings: Settings, ticket: Ticket, outs: list[_Outgoing], now: datetime
) -> list[dict[str, Any]]:
    """Write the ticket's outgoing Messages, which keep the mails' bytes, and the outbox rows
    naming them (Core inserts: no unit of work), one statement per table."""
    if ticket.id is None:
        session.flush()
    rows = [
        {
            "ticket_id": ticket.id,
            "message_id": out.message_id,
            "dedupe_key": None,
            "direction": "out",
            "author": settings.helpdesk.address,
            "internal": out.internal,
            "auto": out.auto,
            "subject": out.rendered.subject,
            "text": out.rendered.text,
            "new_text": out.rendered.text,
            "channel": CHANNEL,
            "possible_duplicate": False,
            "defects": "",
            "raw": out.raw,
            "created_at": now,
        }
        for out in outs
    ]
    insert_rows(session.connection(), _MESSAGE, rows)  # one statement for the lot
    return _insert_items(session, settings, ticket.id, outs, now, kept_in_copies=True)


def _insert_items(
    session: Session,
    settings: Settings,
    ticket_id: int | None,
    outs: list[_Outgoing],
    now: datetime,
    *,
    kept_in_copies: bool = False,
) -> list[dict[str, Any]]:
    """Write the outbox rows of composed mails, each due at its ``due``, in one statement; returns their
    values as ``OutboxItem`` attributes, ``id`` included (plain dicts: building ORM objects
    nobody reads costs more).

    ``kept_in_copies``: the ticket's outgoing messages, written before in this transaction,
    keep the mails' bytes; the rows name them (``message_pk``) and are written without them.
    """
    rows: list[dict[str, Any]] = [
        {
            "ticket_id": ticket_id,
            "kind": out.kind,
            "recipient": out.envelope[0],
            "recipients": json.dumps(out.envelope),
            "envelope_from": settings.helpdesk.address,
            "message_id": out.message_id,
            "auto": out.auto,
            "raw": b"" if kept_in_copies else out.raw,
            "copy_of": out.message_id if kept_in_copies else None,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": out.due,
            "created_at": now,
            "claimed_until": None,
            "claimed_by": None,
            "last_error": "",
            "sent_at": None,
        }
        for out in outs
    ]
    connection = session.connection()
    ids: dict[str, tuple[int, int | None]] = {}
    for count, bound in bound_rows(rows):
        cursor = _insert_items_of(count).execute(connection, bound)
        ids.update((message_id, (item_id, pk)) for message_id, item_id, pk in cursor.fetchall())
        cursor.close()
    caps.count_queued(connection, settings, [(out.auto, out.envelope[0]) for out in outs])
    for out, values in zip(outs, rows, strict=True):
        values["id"], values["message_pk"] = ids[out.message_id]
        if kept_in_copies and values["message_pk"] is None:  # never sent empty: roll back
            raise RuntimeError(f"{out.message_id}: the outgoing message keeping it is missing")
        values["stored_raw"], values["raw"] = values.pop("raw"), out.raw  # as OutboxItem reads them
        del values["copy_of"]
    return rows


def _recipients(
    settings: Settings, kind: str, about: str, to: Sequence[str], cc: Sequence[str]
) -> tuple[list[str], list[str], list[str]] | None:
    """The ``to`` and ``cc`` entries kept and the envelope (to first), or None if no ``to`` is left.

    Invalid addresses, helpdesk addresses and repeats are dropped.
    """
    kept_to: list[str] = []
    kept_cc: list[str] = []
    envelope: list[str] = []
    for position, value in enumerate([*to, *cc]):
        try:
            address = envelope_address(value)
        except ValueError:
            log.warning("%s for %s: dropped invalid recipient %r", kind, about, value)
            continue
        if address in settings.helpdesk.addresses or address in envelope:
            continue
        envelope.append(address)
        (kept_to if position < len(to) else kept_cc).append(value)
    if not kept_to:
        log.warning("%s for %s not sent: no recipient left", kind, about)
        return None
    return kept_to, kept_cc, envelope


def _alert_total_cap(session: Session, services: Services, now: datetime) -> None:
    """Tell every agent, once an hour, that automatic mail to outside addresses stopped."""
    alerted = session.scalar(
        select(OutboxItem.id)
        .where(OutboxItem.kind == AUTO_CAP, OutboxItem.created_at > now - timedelta(hours=1))
        .limit(1)
    )
    if alerted is not None:
        return
    settings = services.settings
    cap = settings.outbound.auto_total_per_hour
    log.error(
        "automatic mail to outside addresses stopped for the hour: %d sent "
        "(outbound.auto_total_per_hour); alerting %d agent(s)",
        cap,
        len(settings.agents),
    )
    for agent in settings.agents:
        enqueue_notice(
            session,
            services,
            kind=AUTO_CAP,
            to=[agent.email],
            template=AGENT_AUTO_CAP,
            context={"helpdesk": helpdesk_info(settings), "cap": cap},
        )
