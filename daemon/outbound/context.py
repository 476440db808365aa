"""What the templates of agent and customer mail are given, and the customer-visible thread.

Templates get plain dicts (never ORM objects), so a template cannot reach beyond what it is
handed, e.g. into other tickets or internal notes.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from postdesk.daemon.config import Settings
from postdesk.daemon.mail.parse import Attachment
from postdesk.daemon.store.tags import format_tag
from postdesk.daemon.store.views import status_shown
from postdesk.models.schema import Message, Ticket

MAX_TEXT_CHARS = 50_000


def helpdesk_info(settings: Settings) -> dict[str, str]:
    """The helpdesk's name and address."""
    return {"name": settings.helpdesk.name, "address": settings.helpdesk.address}


def ticket_info(settings: Settings, ticket: Ticket) -> dict[str, object]:
    """The fields of ``ticket`` a template may show."""
    return {
        "number": ticket.number,
        "tag": format_tag(settings.helpdesk.tag, ticket.number),
        "subject": ticket.subject,
        "status": status_shown(ticket, settings.workflow.labels),
        "priority": ticket.priority,
        "category": ticket.category or "",
        "group": ticket.group_name or "",
        "assignee": ticket.assignee or "",
        "requester": ticket.requester,
    }


def attachment_list(
    attachments: Sequence[Attachment], budget: int
) -> tuple[list[dict[str, object]], list[tuple[str, str, bytes]]]:
    """Every attachment described, and those that fit in ``budget`` bytes in order, to attach."""
    described: list[dict[str, object]] = []
    attached: list[tuple[str, str, bytes]] = []
    for item in attachments:
        fits = len(item.data) <= budget
        if fits:
            budget -= len(item.data)
            attached.append((item.filename, item.content_type, item.data))
        described.append(
            {
                "filename": item.filename,
                "content_type": item.content_type,
                "size": len(item.data),
                "attached": fits,
            }
        )
    return described, attached


def customer_thread(
    session: Session, settings: Settings, ticket: Ticket
) -> tuple[str | None, list[str]]:
    """The last message a customer sent on ``ticket`` and the thread the customers have seen.

    Customers have seen their own mail and our non-internal mail; never agents' mail to us.
    """
    agents = {a.email.lower() for a in settings.agents}
    rows = session.execute(
        select(Message.message_id, Message.direction, Message.author, Message.internal)
        .where(Message.ticket_id == ticket.id)
        .order_by(Message.id)
    ).all()
    seen: list[str] = []
    last_customer: str | None = None
    for message_id, direction, author, internal in rows:
        if internal or (direction == "in" and author.lower() in agents):
            continue
        seen.append(message_id)
        if direction == "in":
            last_customer = message_id
    return last_customer, seen


def trimmed(text: str) -> str:
    """``text`` cut to a size a mail should carry."""
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + "\n[...]"
