"""Step: what goes out because of an authenticated agent's reply.

The reply (commands and quoted history removed, canned text added) goes to the requester and the
Cc collaborators from the helpdesk address, with the agent's name in the From display name and
the files the agent attached; a ticket the reply solved asks the requester for a rating; and
what was wrong with the agent's commands goes back to the agent.
"""

from __future__ import annotations

from sqlalchemy import select

from postdesk.daemon.outbound.context import customer_thread, helpdesk_info, ticket_info
from postdesk.daemon.outbound.outbox import enqueue
from postdesk.daemon.outbound.templating import (
    AGENT_COMMAND_ERROR,
    CUSTOMER_AGENT_REPLY,
    CUSTOMER_CSAT_REQUEST,
)
from postdesk.daemon.pipeline import MessageContext
from postdesk.models.schema import Participant

CUSTOMER_ROLES = ("requester", "cc")
BASE64_RATIO = 0.7  # share of the size limit left for attachments once base64-encoded


def run(ctx: MessageContext) -> None:
    """Queue the relayed reply, the rating request and the error report this reply calls for."""
    if ctx.agent is None or ctx.is_auto or ctx.ticket is None or ctx.message is None:
        return
    files = [a for a in ctx.parsed.attachments if not a.inline]
    relayed = not ctx.message.internal and not ctx.created and bool(ctx.reply_text or files)
    if relayed:
        relay_reply(ctx)
    if ctx.solved:
        request_rating(ctx)
    if ctx.agent_errors:
        report_errors(ctx, relayed)


def relay_reply(ctx: MessageContext) -> None:
    """Send the agent's reply to the requester, Cc the collaborators."""
    assert ctx.ticket is not None and ctx.agent is not None
    settings = ctx.services.settings
    ticket = ctx.ticket
    budget = int(settings.smtp.max_message_bytes * BASE64_RATIO) - len(ctx.reply_text)
    attachments: list[tuple[str, str, bytes]] = []
    for item in ctx.parsed.attachments:
        if len(item.data) > budget:
            ctx.agent_errors.append(f"attachment {item.filename!r} is too large; not sent")
            continue
        budget -= len(item.data)
        attachments.append((item.filename, item.content_type, item.data))
    in_reply_to, thread = customer_thread(ctx.session, settings, ticket)
    enqueue(
        ctx.session,
        ctx.services,
        ticket=ticket,
        kind="agent_reply",
        to=[ticket.requester],
        cc=_collaborators(ctx),
        template=CUSTOMER_AGENT_REPLY,
        context={
            "helpdesk": helpdesk_info(settings),
            "ticket": ticket_info(settings, ticket),
            "agent": {"name": ctx.agent.name or ctx.agent.email},
            "text": ctx.reply_text,
        },
        in_reply_to=in_reply_to,
        references=thread,
        auto=False,
        from_name=f"{ctx.agent.name or ctx.agent.email} via {settings.helpdesk.name}",
        attachments=attachments,
    )


def request_rating(ctx: MessageContext) -> None:
    """Ask the requester how we did, now that the ticket is solved."""
    assert ctx.ticket is not None
    settings = ctx.services.settings
    in_reply_to, thread = customer_thread(ctx.session, settings, ctx.ticket)
    enqueue(
        ctx.session,
        ctx.services,
        ticket=ctx.ticket,
        kind="csat_request",
        to=[ctx.ticket.requester],
        template=CUSTOMER_CSAT_REQUEST,
        context={
            "helpdesk": helpdesk_info(settings),
            "ticket": ticket_info(settings, ctx.ticket),
            "rating_words": list(settings.workflow.rating_words),
        },
        in_reply_to=in_reply_to,
        references=thread,
        auto=True,
    )


def report_errors(ctx: MessageContext, relayed: bool) -> None:
    """Tell the agent which commands of the reply were wrong, and why."""
    assert ctx.ticket is not None and ctx.agent is not None
    settings = ctx.services.settings
    enqueue(
        ctx.session,
        ctx.services,
        ticket=ctx.ticket,
        kind="command_error",
        to=[ctx.agent.email],
        template=AGENT_COMMAND_ERROR,
        context={
            "helpdesk": helpdesk_info(settings),
            "ticket": ticket_info(settings, ctx.ticket),
            "agent": {"name": ctx.agent.name or ctx.agent.email, "email": ctx.agent.email},
            "errors": list(ctx.agent_errors),
            "relayed": relayed,
        },
        in_reply_to=ctx.parsed.message_id,
        references=[*ctx.parsed.references, ctx.parsed.message_id],
        auto=True,
        agent=ctx.agent.email,
        internal_copy=True,
    )


def _collaborators(ctx: MessageContext) -> list[str]:
    assert ctx.ticket is not None
    settings = ctx.services.settings
    rows = ctx.session.execute(
        select(Participant.email)
        .where(Participant.ticket_id == ctx.ticket.id, Participant.role.in_(CUSTOMER_ROLES))
        .order_by(Participant.id)
    ).scalars()
    return [e for e in rows if e != ctx.ticket.requester and settings.agent(e) is None]
