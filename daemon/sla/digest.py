"""The agents' daily digest: each agent's open tickets by mail, once a day at ``[sla] digest_at``.

Once the configured wall-clock time has passed in the digest's timezone, every agent's day is
claimed by inserting a ``digest:<day>:<agent hash>`` row into the ``kv`` table with
insert-ignore, in the same transaction as the digest's outbox row: whichever daemon inserts
first sends it; the others, later rounds and restarts find the row and send nothing. An agent
with no open tickets has the day claimed too (so a ticket arriving at noon sends no late
digest) but gets no mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import Agent, Settings
from postdesk.daemon.outbound.context import helpdesk_info
from postdesk.daemon.outbound.outbox import enqueue_notice
from postdesk.daemon.outbound.templating import AGENT_DIGEST
from postdesk.daemon.services import Services
from postdesk.daemon.store.db import transaction
from postdesk.daemon.store.slaview import aware, due_line, sla_state
from postdesk.daemon.store.tags import format_tag
from postdesk.daemon.store.views import status_shown
from postdesk.models.schema import KeyValue, Message, Participant, Ticket
from postdesk.models.sla import TicketSla

log = logging.getLogger("postdesk.sla.digest")

OPEN = ("new", "open", "pending")
KEY_PREFIX = "digest:"
KEEP_DAYS = 7  # claim rows older than this are deleted


@dataclass(frozen=True)
class DigestRow:
    """One open ticket as an agent's digest shows it."""

    number: int
    tag: str
    subject: str
    status: str
    priority: str
    role: str  # assignee | assistant
    created: str
    requester: str
    due: str
    overdue: bool
    at_risk: bool
    unanswered: bool


async def run(stop: asyncio.Event, services: Services, factory: sessionmaker[Session]) -> None:
    """Send the day's digests once they are due, checking every ``[sla] check_interval``."""
    interval = min(services.sla.check_interval.total_seconds(), 60.0)
    while not stop.is_set():
        try:
            await asyncio.to_thread(send_due, services, factory)
        except Exception as exc:  # database unavailable: the next round tries again
            log.warning("digest check failed, will retry: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


def send_due(services: Services, factory: sessionmaker[Session]) -> list[str]:
    """Claim today's digest of every agent once it is due; return the agents mailed now."""
    schedule = services.sla.digest
    if schedule is None:
        return []
    now = services.clock()
    local = now.astimezone(schedule.timezone)
    if local.time() < schedule.at:
        return []
    day = local.date()
    with factory() as session:  # one cheap read per round once the day is done
        claimed = set(
            session.scalars(select(KeyValue.key).where(KeyValue.key.like(f"{_key('', day)}%")))
        )
    waiting = [a for a in services.settings.agents if _key(a.email, day) not in claimed]
    mailed: list[str] = []
    for agent in waiting:
        with transaction(factory) as session:
            if not claim(session, agent.email, day.isoformat(), now):
                continue
            rows = open_tickets(session, services.settings, agent.email, now, schedule.timezone)
            if rows and _send(session, services, agent, rows, day.isoformat(), schedule.timezone):
                mailed.append(agent.email)
    if not waiting:
        return mailed
    with transaction(factory) as session:
        oldest = (day - timedelta(days=KEEP_DAYS)).isoformat()
        session.execute(
            delete(KeyValue).where(
                KeyValue.key.like(f"{KEY_PREFIX}%"), KeyValue.key < f"{KEY_PREFIX}{oldest}"
            )
        )
    return mailed


def claim(session: Session, email: str, day: str, now: datetime) -> bool:
    """Insert the agent's claim row for ``day`` unless it exists; True when this call did."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(KeyValue)
        .values(key=_key(email, date.fromisoformat(day)), value=now.isoformat())
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(KeyValue.key)
    )
    return session.execute(statement).scalar_one_or_none() is not None


def _key(email: str, day: date) -> str:
    """The claim key of an agent's digest on ``day`` (the day's prefix when ``email`` is "")."""
    if not email:
        return f"{KEY_PREFIX}{day.isoformat()}:"
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:40]
    return f"{KEY_PREFIX}{day.isoformat()}:{digest}"


def open_tickets(
    session: Session, settings: Settings, email: str, now: datetime, zone: ZoneInfo
) -> list[DigestRow]:
    """The agent's open tickets (assignee or assistant), oldest first, with their marks."""
    address = email.strip().lower()
    assisted = select(Participant.ticket_id).where(
        Participant.role == "assistant", func.lower(Participant.email) == address
    )
    query = (
        select(Ticket)
        .where(
            Ticket.status.in_(OPEN),
            or_(func.lower(Ticket.assignee) == address, Ticket.id.in_(assisted)),
        )
        .order_by(Ticket.created_at, Ticket.number)
    )
    rows = []
    for ticket in session.execute(query).scalars():
        state = sla_state(session.get(TicketSla, ticket.id), ticket.status, now)
        created = aware(ticket.created_at) or now
        rows.append(
            DigestRow(
                number=ticket.number,
                tag=format_tag(settings.helpdesk.tag, ticket.number),
                subject=ticket.subject,
                status=status_shown(ticket, settings.workflow.labels),
                priority=ticket.priority,
                role="assignee" if (ticket.assignee or "").lower() == address else "assistant",
                created=f"{created.astimezone(zone):%Y-%m-%d %H:%M}",
                requester=ticket.requester,
                due=due_line(session, ticket),
                overdue=state == "breached",
                at_risk=state == "warning",
                unanswered=unanswered(session, settings, ticket),
            )
        )
    return rows


def unanswered(session: Session, settings: Settings, ticket: Ticket) -> bool:
    """True when the customer's latest mail has no public agent reply after it."""
    public = select(func.max(Message.created_at)).where(
        Message.ticket_id == ticket.id, Message.internal.is_(False)
    )
    answered = session.scalar(public.where(Message.direction == "out", Message.auto.is_(False)))
    incoming = session.execute(
        select(Message.author, Message.created_at)
        .where(Message.ticket_id == ticket.id, Message.internal.is_(False))
        .where(Message.direction == "in", Message.auto.is_(False))
    ).all()
    asked = [aware(at) for author, at in incoming if settings.agent(author) is None]
    latest = max((at for at in asked if at is not None), default=None)
    if latest is None:
        return False
    replied = aware(answered)
    return replied is None or replied < latest


def _send(
    session: Session,
    services: Services,
    agent: Agent,
    rows: list[DigestRow],
    day: str,
    zone: ZoneInfo,
) -> bool:
    """Queue the agent's digest; True when it was queued."""
    context = {
        "helpdesk": helpdesk_info(services.settings),
        "agent": {"name": agent.name or agent.email, "email": agent.email},
        "digest": {
            "day": day,
            "timezone": zone.key,
            "count": len(rows),
            "overdue": sum(r.overdue for r in rows),
            "at_risk": sum(r.at_risk for r in rows),
            "unanswered": sum(r.unanswered for r in rows),
        },
        "tickets": rows,
    }
    item = enqueue_notice(
        session, services, kind="digest", to=[agent.email], template=AGENT_DIGEST, context=context
    )
    return item is not None
