"""The two clocks of a ticket: first response and resolution, kept in ``ticket_sla``.

:func:`refresh` runs whenever a message changed a ticket (the ``sla`` pipeline step). It
selects the policy again (priority, category or tier may have changed), records what
happened to the clocks, and recomputes every due time from the ticket's creation, so a
changed policy applies as if it had been chosen at the start.

- First response: met by the first public agent reply (notes do not count).
- Resolution: stops at ``solved``/``closed``; ``pending`` pauses it, and so does the time a
  ticket spent solved before it was reopened; a customer's reply (which reopens) resumes it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from postdesk.daemon.sla.calendar import Interval
from postdesk.daemon.sla.rules import Policy, Rules
from postdesk.daemon.store.db import add_row, new_row
from postdesk.daemon.store.slaview import STOPPED, aware
from postdesk.models.crm import Organization
from postdesk.models.schema import Contact, Ticket
from postdesk.models.sla import TicketSla

FOREVER = datetime.max.replace(tzinfo=UTC)
PAUSING = ("pending",)  # base states that pause the resolution clock


def requester_tier(session: Session, ticket: Ticket) -> str | None:
    """The requester's contact tier (e.g. "premium") from the CRM, for policies on ``tier``."""
    return session.scalar(select(Contact.tier).where(Contact.email == ticket.requester))


def requester_organization(session: Session, ticket: Ticket) -> str | None:
    """The requester's organization from the CRM (their card, else their mail domain)."""
    by_card = session.scalar(
        select(Organization.name)
        .join(Contact, Contact.organization_id == Organization.id)
        .where(Contact.email == ticket.requester)
    )
    if by_card is not None:
        return by_card
    domain = ticket.requester.rpartition("@")[2].lower()
    return session.scalar(select(Organization.name).where(Organization.domain == domain))


def facts(session: Session, ticket: Ticket, rules: Rules | None = None) -> dict[str, str | None]:
    """What policies match on, for ``ticket``; with ``rules``, the CRM is asked only for the
    facts some policy matches on (no policies: no query at all)."""
    tier = rules is None or rules.matches_on("tier")
    organization = rules is None or rules.matches_on("organization")
    return {
        "priority": ticket.priority,
        "category": ticket.category,
        "tier": requester_tier(session, ticket) if tier else None,
        "organization": requester_organization(session, ticket) if organization else None,
    }


def refresh(
    session: Session,
    rules: Rules,
    ticket: Ticket,
    now: datetime,
    *,
    public_reply: bool = False,
    new: bool = False,
) -> TicketSla:
    """Bring ``ticket``'s SLA row up to date after a change; ``public_reply`` = an agent answered.

    ``new``: the ticket was created in this transaction, so it has no row yet.
    """
    policy = rules.select(facts(session, ticket, rules))  # queries first: no half-made row flushed
    row = None if new else session.get(TicketSla, ticket.id)
    created = row is None
    if row is None:
        values = {"ticket_id": ticket.id, "resolution_paused": "[]", "timezone": "UTC"}
        row = new_row(TicketSla, values) if new else TicketSla(**values)  # new: add_row below
        if not new:
            session.add(row)
    paused = _load(row.resolution_paused)
    running = ticket.status not in (*STOPPED, *PAUSING)
    if not running and row.stopped_since is None:
        row.stopped_since = now
    elif running and row.stopped_since is not None:
        paused.append((_utc(row.stopped_since), now))
        row.stopped_since = None
    row.resolution_paused = json.dumps([[a.isoformat(), b.isoformat()] for a, b in paused])
    if ticket.status in STOPPED:
        row.resolved_at = row.resolved_at or aware(ticket.solved_at) or now
    else:
        row.resolved_at = None
    if public_reply and row.first_response_met_at is None:
        row.first_response_met_at = now
    if ticket.status == "pending" and row.stopped_since is not None:
        paused.append((_utc(row.stopped_since), FOREVER))
    _due_times(row, policy, _utc(ticket.created_at), paused, rules)
    row.updated_at = now
    if created and new:
        add_row(session, row)  # complete now: one INSERT, no unit of work
    return row


def _due_times(
    row: TicketSla, policy: Policy | None, created: datetime, paused: list[Interval], rules: Rules
) -> None:
    """Set the policy and the due and warning times, counted from ``created``."""
    row.policy = policy.name if policy else None
    if policy is None:
        row.first_response_due = row.first_response_warn_at = None
        row.resolution_due = row.resolution_warn_at = None
        return
    calendar, share = policy.calendar, rules.warn_at
    row.timezone = str(calendar.zone)
    row.first_response_due = calendar.add(created, policy.first_response)
    row.first_response_warn_at = calendar.add(created, _share(policy.first_response, share))
    row.resolution_due = calendar.add(created, policy.resolution, paused)
    row.resolution_warn_at = calendar.add(created, _share(policy.resolution, share), paused)


def _share(target: timedelta, share: float) -> timedelta:
    """``share`` of ``target``, to the whole second."""
    return timedelta(seconds=round(target.total_seconds() * share))


def _load(text: str) -> list[Interval]:
    return [
        (datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in json.loads(text or "[]")
    ]


def _utc(moment: datetime) -> datetime:
    value = aware(moment)
    assert value is not None
    return value
