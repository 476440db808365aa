"""The durable outbox: outgoing mail is written in the same transaction as the change causing it.

:func:`enqueue` renders, signs and composes one mail and adds an ``OutboxItem`` row plus the
ticket's outgoing ``Message`` row in the caller's transaction. It never commits; the sender
(:mod:`postdesk.daemon.outbound.sender`) delivers committed rows later. Automatic mail is refused
here, before anything is written, when the recipient is bouncing or over the rate limits, or
when all outside addresses together had ``outbound.auto_total_per_hour`` automatic mails within
the hour (R-43: forged senders must not turn the helpdesk into a mail cannon); the agents then
get one alert per hour.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import make_msgid
from typing import cast

from sqlalchemy import Table, bindparam, func, insert, select
from sqlalchemy.orm import Session

from postdesk.daemon.config import Settings
from postdesk.daemon.outbound.compose import compose, envelope_address
from postdesk.daemon.outbound.context import helpdesk_info
from postdesk.daemon.outbound.templating import AGENT_AUTO_CAP, Rendered
from postdesk.daemon.services import Services
from postdesk.models.schema import Contact, Message, OutboxItem, Ticket

log = logging.getLogger("postdesk.outbox")

CHANNEL = "outbox"
AUTO_CAP = "auto_cap"  # kind of the agents' alert that automatic mail was stopped
_TOTAL_CAP = "the hourly cap on automatic mail to outside addresses is reached"
# Built once; each mail passes only its values (building statements per mail costs more).
_OUTBOX = cast(Table, OutboxItem.__table__)
_INSERT_ITEM = insert(_OUTBOX).returning(_OUTBOX.c.id)
_INSERT_MESSAGE = insert(cast(Table, Message.__table__))
# session.info key: (transaction, count) of automatic mail to outside addresses within the hour
_TOTAL_KEPT = "postdesk.outbox.auto_total"


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
    settings = services.settings
    now = services.clock()
    recipients = _recipients(settings, kind, f"ticket {ticket.number}", to, cc)
    if recipients is None:
        return None
    to_list, cc_list, envelope = recipients
    refusal = _auto_refusal(session, settings, envelope[0], now) if auto else None
    if refusal is not None:
        log.warning(
            "%s to %s for ticket %s not sent: %s", kind, envelope[0], ticket.number, refusal
        )
        if refusal == _TOTAL_CAP:
            _alert_total_cap(session, services, now)
        return None
    if rendered is None:
        rendered = services.templates.render(template, context)
    message_id = services.tokens.mint(ticket.number, agent)
    try:
        raw = compose(
            services,
            to=to_list,
            cc=cc_list,
            subject=rendered.subject,
            rendered=rendered,
            message_id=message_id,
            in_reply_to=in_reply_to,
            references=references,
            auto=auto,
            from_name=from_name,
            attachments=attachments,
        )
    except ValueError as exc:
        log.error("%s %s for ticket %s not sent: %s", message_id, kind, ticket.number, exc)
        return None
    outgoing = _Outgoing(kind, envelope, message_id, auto, raw, rendered, internal_copy)
    item = _record(session, settings, ticket, outgoing, now, held_until or now)
    log.info("%s %s to %s for ticket %s queued", message_id, kind, envelope[0], ticket.number)
    return item


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
    refusal = _auto_refusal(session, settings, envelope[0], now)
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
    outgoing = _Outgoing(kind, envelope, message_id, True, raw, rendered, True)
    item = _insert_item(session, settings, None, outgoing, now, now)
    log.info("%s %s to %s queued", message_id, kind, envelope[0])
    return item


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


def _record(
    session: Session,
    settings: Settings,
    ticket: Ticket,
    out: _Outgoing,
    now: datetime,
    due: datetime,
) -> OutboxItem:
    """Write the outbox row and the ticket's outgoing Message (Core inserts: no unit of work)."""
    if ticket.id is None:
        session.flush()
    item = _insert_item(session, settings, ticket.id, out, now, due)
    session.connection().execute(  # Core statements: no ORM layer between
        _INSERT_MESSAGE,
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
        },
    )
    return item


def _insert_item(
    session: Session,
    settings: Settings,
    ticket_id: int | None,
    out: _Outgoing,
    now: datetime,
    due: datetime,
) -> OutboxItem:
    """Write the outbox row of one composed mail, due at ``due``; returned as a detached record."""
    values: dict[str, object] = {
        "ticket_id": ticket_id,
        "kind": out.kind,
        "recipient": out.envelope[0],
        "recipients": json.dumps(out.envelope),
        "envelope_from": settings.helpdesk.address,
        "message_id": out.message_id,
        "auto": out.auto,
        "raw": out.raw,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": due,
        "created_at": now,
        "claimed_until": None,
        "claimed_by": None,
        "last_error": "",
        "sent_at": None,
    }
    item_id = session.connection().execute(_INSERT_ITEM, values).scalar_one()
    _count_outside_auto(session, settings, out)
    return OutboxItem(id=item_id, **values)


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


def _auto_refusal(
    session: Session, settings: Settings, recipient: str, now: datetime
) -> str | None:
    """Why automatic mail to ``recipient`` must not be sent now, or None when it may.

    Agents are exempt: the caps protect outside addresses from loops and floods, and an agent
    must never silently stop hearing about tickets on a busy day.
    """
    if settings.agent(recipient) is not None:
        return None
    if any(isinstance(row, (OutboxItem, Contact)) for row in [*session.new, *session.dirty]):
        session.flush()  # queued mail and contacts count; nothing else pending changes these
    with session.no_autoflush:
        is_bouncing, in_10min, in_day = session.execute(
            _CAPS,
            {
                "email": recipient.lower(),
                "recipient": recipient,
                "recent": now - timedelta(minutes=10),
                "day": now - timedelta(days=1),
            },
        ).one()
    if is_bouncing:
        return "the address is bouncing"
    outbound = settings.outbound
    windows = (
        (in_10min, outbound.auto_per_recipient_10min, "10 minutes"),
        (in_day, outbound.auto_per_recipient_day, "day"),
    )
    for count, limit, label in windows:
        if (count or 0) >= limit:
            return f"rate limit of {limit} automatic mails per {label} reached"
    if _auto_total_reached(session, settings, now):
        return _TOTAL_CAP
    return None


def _auto_total_reached(session: Session, settings: Settings, now: datetime) -> bool:
    """Whether outside addresses (not agents) had ``outbound.auto_total_per_hour`` automatic
    mails queued within the last hour; reads at most that many index entries.

    Counted once per transaction: the count is kept (see :func:`_count_outside_auto`) and is
    an upper bound for the rest of the transaction, since the hour only moves on and this
    transaction's own mails are added to it; counted again only once that bound reaches the cap.
    """
    cap = settings.outbound.auto_total_per_hour
    kept = session.info.get(_TOTAL_KEPT)
    if kept is not None and kept[0] is session.get_transaction() and kept[1] < cap:
        return False
    counted = _count_total(session, settings, now, cap)
    session.info[_TOTAL_KEPT] = (session.get_transaction(), counted)
    return counted >= cap


def _count_outside_auto(session: Session, settings: Settings, out: _Outgoing) -> None:
    """Add a queued automatic mail to an outside address to the transaction's kept count."""
    kept = session.info.get(_TOTAL_KEPT)
    if kept is None or not out.auto or settings.agent(out.envelope[0]) is not None:
        return
    session.info[_TOTAL_KEPT] = (kept[0], kept[1] + 1)


def _count_total(session: Session, settings: Settings, now: datetime, cap: int) -> int:
    """Automatic mails to outside addresses within the hour before ``now``, counted up to ``cap``."""
    agents = [agent.email.lower() for agent in settings.agents]
    recent = select(OutboxItem.id).where(
        OutboxItem.auto.is_(True), OutboxItem.created_at > now - timedelta(hours=1)
    )
    if agents:
        recent = recent.where(OutboxItem.recipient.not_in(agents))
    with session.no_autoflush:  # _auto_refusal flushed any pending outbox row
        counted = session.scalar(select(func.count()).select_from(recent.limit(cap).subquery()))
    return int(counted or 0)


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


# The bounce flag and both rate windows of a recipient in one statement, built once: this runs
# for every automatic mail.
_CAPS = select(
    select(Contact.bouncing).where(Contact.email == bindparam("email")).scalar_subquery(),
    func.count().filter(OutboxItem.created_at > bindparam("recent")),
    func.count(),
).where(
    OutboxItem.recipient == bindparam("recipient"),
    OutboxItem.auto.is_(True),
    OutboxItem.created_at > bindparam("day"),
)
