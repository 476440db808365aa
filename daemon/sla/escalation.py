"""The escalation scheduler: warning and breach alerts, each once per ticket and target.

Every ``[sla] check_interval`` :func:`check_once` looks for running targets whose warning
time (``warn_at`` of the target) or due time has passed. An alert is claimed by inserting its
``(ticket, target, kind)`` row with insert-ignore in the same transaction as its mails and its
event: whichever daemon inserts first sends it, the others (and later rounds, and restarts)
find the row and send nothing.

Warnings go to the assignee, else the agents of the ticket's group, else every agent. A breach
goes to the assignee, the group and the policy's ``escalate_to`` group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import Agent, Settings
from postdesk.daemon.outbound.context import helpdesk_info, ticket_info
from postdesk.daemon.outbound.outbox import enqueue
from postdesk.daemon.outbound.templating import AGENT_SLA_ALERT
from postdesk.daemon.services import Services
from postdesk.daemon.store.db import transaction
from postdesk.daemon.store.slaview import aware
from postdesk.daemon.store.views import ticket_dict
from postdesk.models.schema import Event, Ticket
from postdesk.models.sla import SlaAlert, TicketSla
from postdesk.plugins.snapshots import freeze

log = logging.getLogger("postdesk.sla")

ACTOR = "postdesk"
RUNNING = ("new", "open", "pending")
TARGETS = {"first_response": "first response", "resolution": "resolution"}


@dataclass(frozen=True)
class Alert:
    """One alert that was claimed and queued: fire the notify hook for it after commit."""

    event: str  # sla.warning | sla.breached
    ticket_number: int
    target: str
    ticket: Any  # read-only snapshot for the plugins (the JSON shape), taken before commit


async def run(stop: asyncio.Event, services: Services, factory: sessionmaker[Session]) -> None:
    """Check the due times every ``[sla] check_interval`` until ``stop`` is set."""
    interval = services.sla.check_interval.total_seconds()
    while not stop.is_set():
        try:
            await asyncio.to_thread(check_once, services, factory)
        except Exception as exc:  # database unavailable: the next round tries again
            log.warning("SLA check failed, will retry: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


def check_once(services: Services, factory: sessionmaker[Session]) -> list[Alert]:
    """Send the warnings and breach alerts due now; return those this call sent."""
    now = services.clock()
    with transaction(factory) as session:
        alerts = [
            alert
            for row, ticket in _candidates(session, now)
            for alert in _alerts_for(session, services, row, ticket, now)
        ]
    for alert in alerts:  # after commit: plugins never hear of an alert that was rolled back
        log.info("%s for ticket %s (%s)", alert.event, alert.ticket_number, alert.target)
        services.plugins.notify(alert.event, alert.ticket, {"target": alert.target})
    return alerts


def _candidates(session: Session, now: datetime) -> Sequence[tuple[TicketSla, Ticket]]:
    """Running tickets with a target whose warning time has passed."""
    query = (
        select(TicketSla, Ticket)
        .join(Ticket, Ticket.id == TicketSla.ticket_id)
        .where(
            Ticket.status.in_(RUNNING),
            or_(
                and_(
                    TicketSla.first_response_met_at.is_(None),
                    TicketSla.first_response_warn_at <= now,
                ),
                and_(TicketSla.resolved_at.is_(None), TicketSla.resolution_warn_at <= now),
            ),
        )
        .order_by(Ticket.number)
    )
    return [(row, ticket) for row, ticket in session.execute(query).all()]


def _alerts_for(
    session: Session, services: Services, row: TicketSla, ticket: Ticket, now: datetime
) -> list[Alert]:
    sent: list[Alert] = []
    targets = (
        (
            "first_response",
            row.first_response_warn_at,
            row.first_response_due,
            row.first_response_met_at,
        ),
        ("resolution", row.resolution_warn_at, row.resolution_due, row.resolved_at),
    )
    for target, warn, due, met in targets:
        warn, due = aware(warn), aware(due)
        if met is not None or warn is None or due is None or now < warn:
            continue
        kind = "breached" if now >= due else "warning"
        if _claim(session, ticket, target, kind, due, now):
            _send(session, services, row, ticket, target, kind, due)
            snapshot = freeze(ticket_dict(ticket, services.settings.helpdesk.tag, False))
            sent.append(Alert(f"sla.{kind}", ticket.number, target, snapshot))
    return sent


def _claim(
    session: Session, ticket: Ticket, target: str, kind: str, due: datetime, now: datetime
) -> bool:
    """Insert the alert's row unless it exists; True when this call inserted it."""
    values = {"ticket_id": ticket.id, "target": target, "kind": kind, "due": due, "at": now}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(SlaAlert)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["ticket_id", "target", "kind"])
        .returning(SlaAlert.id)
    )
    return session.execute(statement).scalar_one_or_none() is not None


def _send(
    session: Session,
    services: Services,
    row: TicketSla,
    ticket: Ticket,
    target: str,
    kind: str,
    due: datetime,
) -> None:
    """Queue the alert to each recipient and record it in the ticket's event log."""
    settings = services.settings
    escalate_to = _escalation_group(services, row) if kind == "breached" else ""
    agents = recipients(settings, ticket, kind == "breached", escalate_to)
    local = due.astimezone(ZoneInfo(row.timezone))
    alert = {
        "kind": kind,
        "target": TARGETS[target],
        "policy": row.policy,
        "due": f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({row.timezone})",
        "due_utc": due.isoformat(),
        "escalated_to": escalate_to,
    }
    for agent in agents:
        enqueue(
            session,
            services,
            ticket=ticket,
            kind=f"sla_{kind}",
            to=[agent.email],
            template=AGENT_SLA_ALERT,
            context={
                "helpdesk": helpdesk_info(settings),
                "agent": {"name": agent.name or agent.email, "email": agent.email},
                "ticket": ticket_info(settings, ticket),
                "alert": alert,
            },
            in_reply_to=None,
            references=[],
            auto=True,
            agent=agent.email,
            internal_copy=True,
        )
    detail = {**alert, "notified": [a.email for a in agents]}
    session.add(
        Event(
            ticket_id=ticket.id,
            at=services.clock(),
            actor=ACTOR,
            kind=f"sla.{kind}",
            detail=json.dumps(detail),
        )
    )
    log.info("sla.%s: ticket %s %s due %s", kind, ticket.number, target, due.isoformat())


def _escalation_group(services: Services, row: TicketSla) -> str:
    policy = next((p for p in services.sla.policies if p.name == row.policy), None)
    return policy.escalate_to if policy else ""


def recipients(
    settings: Settings, ticket: Ticket, breach: bool = False, escalate_to: str = ""
) -> list[Agent]:
    """Whom an alert goes to: the assignee, else the ticket's group, else every agent.

    A ``breach`` goes to the assignee and the group (every agent when there is neither),
    plus the ``escalate_to`` group.
    """
    assignee = settings.agent(ticket.assignee)
    group = ticket.group_name or ""
    chosen: list[Agent | None] = [assignee] if assignee is not None else []
    if breach or not chosen:
        chosen += [a for a in settings.agents if group and group in a.groups]
    if not chosen:
        chosen = list(settings.agents)
    if breach and escalate_to:
        chosen += [a for a in settings.agents if escalate_to in a.groups]
    chosen += [settings.agent(p.email) for p in ticket.participants if p.role == "assistant"]
    unique: dict[str, Agent] = {a.email.lower(): a for a in chosen if a is not None}
    return list(unique.values())
