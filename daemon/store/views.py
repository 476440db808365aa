"""Tickets as the plain data SPEC section 3 promises (``ticket N --json``, plugin snapshots)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session, selectinload

from postdesk.daemon.store.bounces import bouncing_participants
from postdesk.daemon.store.tags import format_tag
from postdesk.models.schema import Message, Ticket


def ticket_dict(ticket: Ticket, tag: str, with_messages: bool = True) -> dict[str, Any]:
    """One ticket as a JSON-ready dict, with its messages unless told otherwise."""
    data: dict[str, Any] = {
        "number": ticket.number,
        "tag": format_tag(tag, ticket.number),
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "category": ticket.category,
        "requester": ticket.requester,
        "assignee": ticket.assignee,
        "spam": ticket.spam,
        "rating": ticket.rating,
        "merged_into": ticket.merged_into,
        "follows": ticket.follows,
        "created_at": ticket.created_at.isoformat(),
        "updated_at": ticket.updated_at.isoformat(),
        "participants": [p.email for p in ticket.participants],
    }
    if with_messages:
        session = object_session(ticket)
        data["bouncing"] = bouncing_participants(session, ticket) if session else []
        data["messages"] = [message_dict(m) for m in ticket.messages]
    return data


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
        "channel": message.channel,
        "possible_duplicate": message.possible_duplicate,
        "created_at": message.created_at.isoformat(),
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size}
            for a in message.attachments
        ],
    }


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
    """Tickets by number, optionally only those with ``status``."""
    query = select(Ticket).options(selectinload(Ticket.participants)).order_by(Ticket.number)
    if status:
        query = query.where(Ticket.status == status)
    return list(session.execute(query).scalars())
