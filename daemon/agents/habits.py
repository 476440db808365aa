"""Two agent habits (issue 12): opening a ticket for a customer, and adding helpers.

``#requester ADDRESS`` in an agent's mail that opens a ticket (a phone call written down, a
customer's mail forwarded) makes ADDRESS the requester: the acknowledgement goes to them, the
agent's text is the first message. ``#assist AGENT`` adds an assistant who is notified like the
assignee; ``#unassist AGENT`` removes one. Assistants are participants with role ``assistant``.
"""

from __future__ import annotations

from sqlalchemy import update

from postdesk.daemon.agents.commands import Command
from postdesk.daemon.config import Agent
from postdesk.daemon.outbound.compose import envelope_address
from postdesk.daemon.pipeline import MessageContext, add_participant, log_event
from postdesk.daemon.store.db import insert_ignore
from postdesk.models.schema import Contact, Participant

ASSISTANT = "assistant"


def requester(ctx: MessageContext, command: Command, canned: list[str]) -> str:
    """#requester ADDRESS: the new ticket this mail opens belongs to ADDRESS."""
    ticket, agent = ctx.ticket, ctx.agent
    assert ticket is not None and agent is not None
    if not ctx.created:
        return (
            "#requester goes in a new mail to the helpdesk, which opens a ticket for the customer"
        )
    try:
        address = envelope_address(command.argument)
    except ValueError:
        return "not an email address"
    settings = ctx.services.settings
    if address in settings.helpdesk.addresses or settings.agent(address) is not None:
        return "the requester is a customer, not a helpdesk or agent address"
    ctx.session.execute(
        update(Participant)
        .where(Participant.ticket_id == ticket.id, Participant.email == ticket.requester)
        .values(role="agent")
    )
    ticket.requester = address
    add_participant(ctx, ticket, address, "requester")
    values = {"email": address, "name": "", "created_at": ctx.services.clock()}
    insert_ignore(ctx.session, Contact.__table__, values, ["email"])
    log_event(ctx, "requester", {"requester": address, "opened_by": agent.email}, agent.email)
    return ""


def assist(ctx: MessageContext, command: Command, canned: list[str]) -> str:
    """#assist AGENT: AGENT helps with the ticket and hears of it like the assignee."""
    return _set_assistant(ctx, command, True)


def unassist(ctx: MessageContext, command: Command, canned: list[str]) -> str:
    """#unassist AGENT: AGENT no longer assists."""
    return _set_assistant(ctx, command, False)


def assistants(ticket_participants: list[Participant]) -> list[str]:
    """The addresses of a ticket's assistants, in the order they were added."""
    return [p.email for p in ticket_participants if p.role == ASSISTANT]


def _set_assistant(ctx: MessageContext, command: Command, on: bool) -> str:
    ticket, actor = ctx.ticket, ctx.agent
    assert ticket is not None and actor is not None
    found = _agent(ctx, command.argument)
    if found is None:
        return "no such agent (an assistant is one of the configured agents)"
    email = found.email.lower()
    existing = next((p for p in ticket.participants if p.email == email), None)
    if on and existing is None:
        ticket.participants.append(Participant(email=email, role=ASSISTANT))
    elif on and existing is not None:
        existing.role = ASSISTANT
    elif existing is not None and existing.role == ASSISTANT:
        existing.role = "agent"
    else:
        return "that agent is not an assistant of this ticket"
    log_event(ctx, "assist" if on else "unassist", {"assistant": email}, actor.email)
    return ""


def _agent(ctx: MessageContext, wanted: str) -> Agent | None:
    wanted = wanted.lower()
    if wanted == "me":
        return ctx.agent
    found = [
        a
        for a in ctx.services.settings.agents
        if wanted in (a.email.lower(), a.name.lower(), a.email.lower().partition("@")[0])
    ]
    return found[0] if len(found) == 1 else None
