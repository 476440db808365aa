"""Tickets as the plain data SPEC section 3 promises (``ticket N --json``, plugin snapshots)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session, selectinload

from postdesk.daemon.store.bounces import bouncing_participants
from postdesk.daemon.store.slaview import sla_dict
from postdesk.daemon.store.tags import format_tag
from postdesk.models.schema import Message, Ticket


def ticket_dict(
    ticket: Ticket,
    tag: str,
    with_messages: bool = True,
    labels: Mapping[str, str] | None = None,
    participants: Sequence[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """One ticket as a JSON-ready dict, with its messages unless told otherwise.

    ``labels`` (``[workflow]`` label -> base state) names the status in the team's words;
    ``participants`` ((email, role) by id) spares loading them when the caller has them.
    """
    if participants is None:
        participants = [(p.email, p.role) for p in ticket.participants]
    data: dict[str, Any] = {
        "number": ticket.number,
        "tag": format_tag(tag, ticket.number),
        "subject": ticket.subject,
        "status": status_shown(ticket, labels),
        "state": ticket.status,
        "priority": ticket.priority,
        "category": ticket.category,
        "requester": ticket.requester,
        "assignee": ticket.assignee,
        "spam": ticket.spam,
        "spam_score": ticket.spam_score,
        "category_score": ticket.category_score,
        "rating": ticket.rating,
        "merged_into": ticket.merged_into,
        "follows": ticket.follows,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "participants": [email for email, _role in participants],
        "assistants": [email for email, role in participants if role == "assistant"],
    }
    session = object_session(ticket)
    if session is not None:
        data["sla"] = sla_dict(session, ticket)
    if with_messages:
        data["bouncing"] = bouncing_participants(session, ticket) if session else []
        data["messages"] = [message_dict(m) for m in ticket.messages]
    return data


def status_shown(ticket: Ticket, labels: Mapping[str, str] | None) -> str:
    """The ticket's status label if it names its base state, else that state's first label."""
    if not labels:
        return ticket.status
    if ticket.status_label is not None and labels.get(ticket.status_label) == ticket.status:
        return ticket.status_label
    return next((label for label, state in labels.items() if state == ticket.status), ticket.status)


def message_dict(message: Message) -> dict[str, Any]:
    """One message as a JSON-ready dict."""
    return {
        "message_id": message.message_id,
        "direction": message.direction,
        "author": message.author,
        "internal": message.internal,
        "auto": message.auto,
        "subject": message.subject,
        "text": message.text,
        "new_text": message.new_text,
        "channel": message.channel,
        "possible_duplicate": message.possible_duplicate,
        "created_at": iso(message.created_at),
        "read_at": iso(message.read_at) if message.read_at else None,  # sent mail, by MDN
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size}
            for a in message.attachments
        ],
    }


def shown_text(message: dict[str, Any]) -> str:
    """What ``postdesk ticket N`` prints of a message: its new text, and a note when more exists."""
    new, whole = str(message["new_text"]).rstrip(), str(message["text"]).rstrip()
    if not new or new == whole:
        return whole
    hidden = len(whole.splitlines()) - len(new.splitlines())
    return f"{new}\n[{max(hidden, 1)} more line(s) of quoted text or signature: see --json]"


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with its offset ("+00:00"); SQLite hands back naive UTC datetimes."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat()


def load_ticket(session: Session, number: int) -> Ticket | None:
    """A ticket with its participants, messages and attachments loaded."""
    query = (
        select(Ticket)
        .where(Ticket.number == number)
        .options(
            selectinload(Ticket.participants),
            selectinload(Ticket.messages).selectinload(Message.attachments),
        )
    )
    return session.execute(query).scalar_one_or_none()


def list_tickets(session: Session, status: str | None = None) -> list[Ticket]:
    """Tickets by number, optionally only those with ``status`` ("spam": those marked spam)."""
    query = select(Ticket).options(selectinload(Ticket.participants)).order_by(Ticket.number)
    if status == "spam":
        query = query.where(Ticket.spam.is_(True))
    elif status:
        query = query.where(Ticket.status == status)
    return list(session.execute(query).scalars())
