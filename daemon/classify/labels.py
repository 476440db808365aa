"""Labels agents teach with ``#spam``, ``#ham`` and ``#category``, and reading them back.

A label is stored against the ticket's first inbound message, the one the classifier judged
when the ticket was opened. For retraining, the latest label of a kind per message counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from postdesk.daemon.store.rawfiles import message_raw
from postdesk.models.classify import ClassifyLabel
from postdesk.models.schema import Message, Ticket

SPAM_KIND, CATEGORY_KIND = "spam", "category"


def first_inbound(session: Session, ticket: Ticket) -> Message | None:
    """The ticket's first inbound message, if it has one."""
    query = (
        select(Message)
        .where(Message.ticket_id == ticket.id, Message.direction == "in")
        .order_by(Message.id)
        .limit(1)
    )
    return session.execute(query).scalar_one_or_none()


def record(
    session: Session, ticket: Ticket, kind: str, label: str, actor: str, at: datetime
) -> bool:
    """Store an agent's label for the ticket's first inbound message; False when it has none."""
    message = first_inbound(session, ticket)
    if message is None:
        return False
    session.add(
        ClassifyLabel(
            ticket_id=ticket.id,
            message_pk=message.id,
            kind=kind,
            label=label,
            actor=actor,
            created_at=at,
        )
    )
    return True


def _latest(session: Session, kind: str) -> dict[int, str]:
    """message pk -> the latest label of ``kind`` given to it."""
    rows = session.execute(
        select(ClassifyLabel.message_pk, ClassifyLabel.label)
        .where(ClassifyLabel.kind == kind)
        .order_by(ClassifyLabel.id)
    ).all()
    return {message_pk: label for message_pk, label in rows}


def latest_id(session: Session, kind: str) -> int:
    """The id of the newest label of ``kind`` (0 when there is none): a model trained with the
    labels records it, so that a scheduled retraining can tell whether agents taught since."""
    newest = session.execute(
        select(func.max(ClassifyLabel.id)).where(ClassifyLabel.kind == kind)
    ).scalar_one()
    return int(newest or 0)


def spam_examples(session: Session, data_dir: Path) -> Iterator[tuple[bytes, str]]:
    """(raw message, "spam" or "ham") for every message agents labelled."""
    return _examples(session, data_dir, SPAM_KIND)


def category_examples(session: Session, data_dir: Path) -> Iterator[tuple[bytes, str]]:
    """(raw message, category) for every message whose ticket an agent categorised."""
    return _examples(session, data_dir, CATEGORY_KIND)


def _examples(session: Session, data_dir: Path, kind: str) -> Iterator[tuple[bytes, str]]:
    """(raw message, latest label of ``kind``), one message read at a time; a large message
    whose file is in another daemon's data dir is left out."""
    latest = _latest(session, kind)
    if not latest:
        return
    rows = session.execute(
        select(Message.id, Message.raw, Message.raw_sha256).where(Message.id.in_(latest))
    ).all()
    for pk, raw, raw_sha256 in rows:
        found = message_raw(data_dir, raw, raw_sha256)
        if found is not None:  # a large message another daemon stored: not on this host
            yield found, latest[pk]
