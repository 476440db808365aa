"""Steps: a cap on new tickets per sender (R-42).

``divert`` (after threading): a sender who opened ``processing.flood_max_new_tickets`` tickets
within ``flood_window_minutes`` opens no more; the mail joins their newest open ticket, marked
automatic so it is never answered nor notified. With no open ticket left a new one is opened,
acknowledged at most once per ``flood_ack_minutes``. ``settle`` (after storing): the joined
mail becomes an internal note, and the agents get one alert per sender and window.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select

from postdesk.daemon.outbound.context import helpdesk_info, ticket_info
from postdesk.daemon.outbound.outbox import enqueue
from postdesk.daemon.outbound.templating import AGENT_FLOOD
from postdesk.daemon.pipeline import MessageContext, log_event
from postdesk.models.schema import Event, OutboxItem, Ticket

log = logging.getLogger("postdesk.flood")

OPEN = ("new", "open", "pending")


def divert(ctx: MessageContext) -> None:
    """Send a flooding sender's would-be new ticket to their newest open ticket."""
    if ctx.ticket is not None or ctx.agent is not None or not ctx.sender:
        return
    limits = ctx.services.settings.processing
    now = ctx.services.clock()
    count = ctx.recent_new_tickets  # counted by the dedupe step
    if count is None:
        count = _new_tickets(ctx, now - timedelta(minutes=limits.flood_window_minutes))
    if count < limits.flood_max_new_tickets:
        return
    ctx.flooded = True
    why = (
        f"flood: {count} new tickets within {limits.flood_window_minutes} min "
        "(processing.flood_max_new_tickets)"
    )
    newest = ctx.session.scalars(
        select(Ticket)
        .where(
            Ticket.requester == ctx.sender, Ticket.status.in_(OPEN), Ticket.merged_into.is_(None)
        )
        .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        .limit(1)
    ).first()
    if newest is not None:
        ctx.ticket = newest
        ctx.auto_reason = ctx.auto_reason or why
        ctx.notes.append(f"{why}: added as a note")
    elif _acknowledged_since(ctx, now - timedelta(minutes=limits.flood_ack_minutes)):
        ctx.auto_reason = ctx.auto_reason or why


def settle(ctx: MessageContext) -> None:
    """Make a flooding sender's joined mail a note and alert the agents once per window."""
    if not ctx.flooded or ctx.message is None or ctx.ticket is None:
        return
    if not ctx.created:
        ctx.message.internal = True
    limits = ctx.services.settings.processing
    now = ctx.services.clock()
    since = now - timedelta(minutes=limits.flood_window_minutes)
    alerted = ctx.session.scalar(
        select(Event.id)
        .where(Event.kind == "flood", Event.actor == ctx.sender, Event.at > since)
        .limit(1)
    )
    if alerted is not None:
        return
    count = _new_tickets(ctx, since)
    log_event(ctx, "flood", {"sender": ctx.sender, "new_tickets": count}, actor=ctx.sender)
    log.warning(
        "%s opened %d tickets within %d min: further mail joins ticket #%d as notes",
        ctx.sender,
        count,
        limits.flood_window_minutes,
        ctx.ticket.number,
    )
    settings = ctx.services.settings
    context: dict[str, object] = {
        "helpdesk": helpdesk_info(settings),
        "ticket": ticket_info(settings, ctx.ticket),
        "author": {"email": ctx.sender, "name": ctx.parsed.from_name},
        "count": count,
        "window": limits.flood_window_minutes,
        "ack_minutes": limits.flood_ack_minutes,
    }
    for agent in settings.agents:
        enqueue(
            ctx.session,
            ctx.services,
            ticket=ctx.ticket,
            kind="flood",
            to=[agent.email],
            template=AGENT_FLOOD,
            context=context,
            in_reply_to=None,
            references=[],
            auto=True,
            agent=agent.email,
            internal_copy=True,
        )


# Built once: the tickets a sender opened since then (the dedupe step asks it of every mail).
NEW_TICKETS = select(func.count()).where(
    Ticket.requester == bindparam("sender"), Ticket.created_at > bindparam("since")
)


def _new_tickets(ctx: MessageContext, since: datetime) -> int:
    connection = ctx.session.connection()  # Core: no ORM layer between
    return int(connection.scalar(NEW_TICKETS, {"sender": ctx.sender, "since": since}) or 0)


def _acknowledged_since(ctx: MessageContext, since: datetime) -> bool:
    query = select(OutboxItem.id).where(
        OutboxItem.kind == "acknowledgement",
        OutboxItem.recipient == ctx.sender,
        OutboxItem.created_at > since,
    )
    return ctx.session.scalar(query.limit(1)) is not None
