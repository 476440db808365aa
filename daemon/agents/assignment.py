"""Who handles a ticket: its group (from its category) and its assignee (by hand or in turn).

``[routing] categories`` maps a category to a group; agents belong to groups. Groups listed in
``[routing] round_robin`` assign each new ticket to the next of their agents, in the order
the agents are configured; the position is a shared counter row, so several daemons agree (on
PostgreSQL it is bumped in its own short transaction, so worker processes never queue on it; a
rolled-back message may skip a turn).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from postdesk.daemon.config import Agent, Settings
from postdesk.daemon.store.db import next_shared_value
from postdesk.models.schema import Participant, Ticket

SYSTEM_ACTOR = "postdesk"  # the actor named in events of automatic assignment


def group_agents(settings: Settings, group: str | None) -> list[Agent]:
    """The agents of ``group``, in configuration order (none for no group)."""
    return [a for a in settings.agents if group and group in a.groups]


def recipients(settings: Settings, ticket: Ticket, opened_now: bool = False) -> list[Agent]:
    """Whom to tell about ``ticket``: its assignee, else its group, else every agent; and its
    assistants. ``opened_now``: the ticket was opened by the message at hand, not by an agent,
    so it has no assistants yet (only an agent's ``#assist`` adds one): none are looked up."""
    assignee = settings.agent(ticket.assignee)
    if assignee is not None:
        chosen = [assignee]
    else:
        chosen = group_agents(settings, ticket.group_name) or list(settings.agents)
    if opened_now:
        return list({a.email.lower(): a for a in chosen}.values())
    return _with_assistants(settings, ticket, chosen)


def _with_assistants(settings: Settings, ticket: Ticket, chosen: list[Agent]) -> list[Agent]:
    """``chosen`` plus the ticket's assistants (``#assist``), each agent once.

    Only the assistants' addresses are read, not every participant as objects (this runs for
    every notification).
    """
    session = object_session(ticket)
    if session is None:
        assistants = [p.email for p in ticket.participants if p.role == "assistant"]
    else:
        query = (
            select(Participant.email)
            .where(Participant.ticket_id == ticket.id, Participant.role == "assistant")
            .order_by(Participant.id)
        )
        if any(isinstance(row, Participant) for row in session.new):
            session.flush()  # an assistant just added (#assist); nothing else pending counts
        with session.no_autoflush:
            assistants = list(session.scalars(query))
    helpers = [settings.agent(email) for email in assistants]
    unique = {a.email.lower(): a for a in [*chosen, *helpers] if a is not None}
    return list(unique.values())


def group_of(settings: Settings, category: str) -> str | None:
    """The group ``category`` maps to, if any."""
    group: str | None = settings.routing.categories.get(category)
    return group


def assign_in_turn(session: Session, settings: Settings, ticket: Ticket) -> Agent | None:
    """Give an unassigned ticket of a group that takes turns to that group's next agent."""
    group = ticket.group_name
    if ticket.assignee or not group or group not in settings.routing.round_robin:
        return None
    agents = group_agents(settings, group)
    if not agents:
        return None
    chosen = agents[(next_shared_value(session, f"rr:{group}") - 1) % len(agents)]
    ticket.assignee = chosen.email.lower()
    return chosen
