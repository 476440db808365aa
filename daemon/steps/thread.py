"""Step: decide which ticket a message belongs to (SPEC section 4).

In order: a Message-ID in In-Reply-To/References stored in or sent from a ticket; then a subject
tag naming a ticket of which the sender is a participant. Mail to a solved or closed ticket
reopens it within ``reopen_days``, later it starts a new ticket that follows the old one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from postdesk.daemon.pipeline import Hold, MessageContext
from postdesk.daemon.store.db import in_list
from postdesk.daemon.store.tags import find_ticket_numbers
from postdesk.models.schema import Message, Participant, Ticket

MAX_MERGE_HOPS = 10


def run(ctx: MessageContext) -> None:
    """Set ``ctx.ticket`` to the ticket this message continues (None: a new ticket)."""
    ticket = by_headers(ctx) or by_tag(ctx)
    ticket = _follow_merges(ctx, ticket) if ticket else None
    if ticket is not None and ticket.status in ("solved", "closed"):
        window = timedelta(days=ctx.services.settings.helpdesk.reopen_days)
        since = ticket.solved_at or ticket.updated_at
        if _aware(since) + window < ctx.services.clock():
            ctx.notes.append(f"follows closed ticket #{ticket.number}")
            ctx.follows = ticket.number
            ticket = None
    if ticket is None and ctx.parsed.report_type:
        raise Hold(f"{ctx.parsed.report_type} report about no known ticket")
    ctx.ticket = ticket


def by_headers(ctx: MessageContext) -> Ticket | None:
    """The ticket holding a message this one replies to, if the reply is believable.

    A reference proves knowledge of the thread only when the sender is a participant or the
    referenced mail is one the helpdesk sent (its Message-ID carries our HMAC).
    """
    parsed = ctx.parsed
    wanted = [*reversed(parsed.references), *parsed.in_reply_to]
    if not wanted:
        return None
    rows = ctx.session.execute(
        select(Message.message_id, Ticket)
        .join(Ticket)
        .where(Message.message_id.in_(in_list(wanted)))
    ).all()
    for message_id, ticket in rows:
        if ctx.services.tokens.verify(message_id) or _is_participant(ctx, ticket):
            return ticket
    if rows:
        ctx.notes.append("references a ticket the sender is not part of")
    return None


def by_tag(ctx: MessageContext) -> Ticket | None:
    """The ticket named by a subject tag, only if the sender takes part in it."""
    tag = ctx.services.settings.helpdesk.tag
    for number in find_ticket_numbers(tag, ctx.parsed.subject):
        ticket = ctx.session.execute(
            select(Ticket).where(Ticket.number == number)
        ).scalar_one_or_none()
        if ticket is None:
            continue
        ticket = _follow_merges(ctx, ticket)
        if _is_participant(ctx, ticket):
            return ticket
        ctx.notes.append(f"possible misdirected reply: tag of #{number} from a non-participant")
    return None


def _is_participant(ctx: MessageContext, ticket: Ticket) -> bool:
    if ctx.agent is not None:  # an authenticated agent (see steps.authenticate)
        return True
    found = ctx.session.execute(
        select(Participant.id).where(
            Participant.ticket_id == ticket.id, Participant.email == ctx.sender
        )
    ).first()
    return found is not None


def _follow_merges(ctx: MessageContext, ticket: Ticket) -> Ticket:
    for _ in range(MAX_MERGE_HOPS):
        if ticket.merged_into is None:
            return ticket
        target = ctx.session.execute(
            select(Ticket).where(Ticket.number == ticket.merged_into)
        ).scalar_one_or_none()
        if target is None:
            return ticket
        ticket = target
    return ticket


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
