"""Step: put a new ticket in its group and, in a group that takes turns, give it an agent.

The group comes from ``[routing] categories`` for the ticket's category, else from
``[routing] default_group``. Groups listed in ``[routing] round_robin`` assign new tickets to
their agents in turn (automatic mail is never assigned).
"""

from __future__ import annotations

from postdesk.daemon.agents import assignment
from postdesk.daemon.pipeline import MessageContext, log_event


def run(ctx: MessageContext) -> None:
    """Route a ticket this message created."""
    ticket = ctx.ticket
    if not ctx.created or ticket is None:
        return
    settings = ctx.services.settings
    mapped = assignment.group_of(settings, ticket.category) if ticket.category else None
    group = ticket.group_name or mapped or settings.routing.default_group or None
    if group != ticket.group_name:  # setting the same value would dirty the ticket for nothing
        ticket.group_name = group
    if ctx.is_auto or ticket.spam:
        return
    if assignment.assign_in_turn(ctx.session, settings, ticket) is not None:
        detail = {"assignee": ticket.assignee, "how": f"round-robin in {ticket.group_name}"}
        log_event(ctx, "assigned", detail, actor=assignment.SYSTEM_ACTOR)
