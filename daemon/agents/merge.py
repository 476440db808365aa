"""Merging tickets: one ticket's messages and participants move into another, which lives on.

The merged ticket is closed with ``merged_into`` naming the target; threading follows that link,
so mail to the old tag or replying to the old messages lands in the target.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from postdesk.daemon.store.db import insert_ignore
from postdesk.models.schema import Event, Message, Participant, Ticket


def merge(
    session: Session, source: Ticket, number: int, actor: str, now: datetime
) -> tuple[Ticket | None, str]:
    """Merge ``source`` into ticket ``number`` at ``now``; the target, or None and why not."""
    target = session.execute(select(Ticket).where(Ticket.number == number)).scalar_one_or_none()
    if target is None:
        return None, f"there is no ticket #{number}"
    if target.id == source.id:
        return None, "a ticket cannot be merged into itself"
    if target.merged_into is not None:
        return None, f"ticket #{number} was merged into #{target.merged_into}; merge into that one"
    session.flush()
    session.execute(
        update(Message)
        .where(Message.ticket_id == source.id)
        .values(ticket_id=target.id)
        .execution_options(synchronize_session="fetch")
    )
    people = session.execute(
        select(Participant.email, Participant.role).where(Participant.ticket_id == source.id)
    ).all()
    for email, role in people:
        insert_ignore(
            session,
            Participant.__table__,
            {"ticket_id": target.id, "email": email, "role": role},
            ["ticket_id", "email"],
        )
    session.execute(delete(Participant).where(Participant.ticket_id == source.id))
    source.merged_into, source.status = target.number, "closed"
    source.solved_at = source.solved_at or now
    for ticket, detail in ((source, {"into": target.number}), (target, {"from": source.number})):
        session.add(
            Event(
                ticket_id=ticket.id, at=now, actor=actor, kind="merged", detail=json.dumps(detail)
            )
        )
    return target, ""
