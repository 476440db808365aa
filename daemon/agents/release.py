"""``#ham`` on a ticket the classifier held: it is then acknowledged and notified as normal.

A ticket closed as spam when it was opened got no acknowledgement, no notification and no
assignee. When an agent releases it, the requester gets the acknowledgement of the first
message, the ticket takes its turn in a round-robin group, and the agents who would have been
told about a new ticket are told now (the releasing agent knows already). A ticket that was
acknowledged before (an agent's ``#spam`` on a live ticket) gets nothing again.
"""

from __future__ import annotations

from sqlalchemy import select

from postdesk.daemon.agents import assignment
from postdesk.daemon.outbound.context import helpdesk_info, ticket_info, trimmed
from postdesk.daemon.outbound.outbox import enqueue
from postdesk.daemon.outbound.templating import AGENT_NOTIFICATION, CUSTOMER_ACKNOWLEDGEMENT
from postdesk.daemon.pipeline import MessageContext, log_event
from postdesk.models.schema import Message, OutboxItem

ACKNOWLEDGEMENT = "acknowledgement"


def release(ctx: MessageContext) -> None:
    """Acknowledge and notify a released ticket that never was (see the module docstring)."""
    ticket, session, settings = ctx.ticket, ctx.session, ctx.services.settings
    assert ticket is not None and ctx.agent is not None
    acknowledged = session.execute(
        select(OutboxItem.id).where(
            OutboxItem.ticket_id == ticket.id, OutboxItem.kind == ACKNOWLEDGEMENT
        )
    ).first()
    first = session.execute(
        select(Message)
        .where(Message.ticket_id == ticket.id, Message.direction == "in")
        .order_by(Message.id)
        .limit(1)
    ).scalar_one_or_none()
    if acknowledged is not None or first is None or first.auto:
        return
    if assignment.assign_in_turn(session, settings, ticket) is not None:
        detail = {"assignee": ticket.assignee, "how": f"round-robin in {ticket.group_name}"}
        log_event(ctx, "assigned", detail, actor=assignment.SYSTEM_ACTOR)
    enqueue(
        session,
        ctx.services,
        ticket=ticket,
        kind=ACKNOWLEDGEMENT,
        to=[ticket.requester],
        template=CUSTOMER_ACKNOWLEDGEMENT,
        context={"helpdesk": helpdesk_info(settings), "ticket": ticket_info(settings, ticket)},
        auto=True,
        in_reply_to=first.message_id,
        references=[first.message_id],
    )
    for agent in assignment.recipients(settings, ticket):
        if agent.email.lower() == ctx.agent.email.lower():
            continue
        context: dict[str, object] = {
            "helpdesk": helpdesk_info(settings),
            "agent": {"name": agent.name or agent.email, "email": agent.email},
            "ticket": ticket_info(settings, ticket),
            "author": {"email": first.author, "name": ""},
            "subject": first.subject,
            "text": trimmed(first.new_text),
            "attachments": [],
            "notes": [f"released from spam by {ctx.agent.email}"],
            "plugin_facts": {},
            "event": "new",
        }
        enqueue(
            session,
            ctx.services,
            ticket=ticket,
            kind=AGENT_NOTIFICATION.rpartition("/")[2],
            to=[agent.email],
            template=AGENT_NOTIFICATION,
            context=context,
            auto=True,
            agent=agent.email,
            internal_copy=True,
            in_reply_to=first.message_id,
            references=[first.message_id],
        )
