"""Bouncing contacts (R-29): set on a permanent failure or a delivery report about our mail,
cleared when the contact writes to us again. Automatic mail is never sent to a bouncing address
(``outbound.outbox``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.store.db import insert_ignore, transaction
from postdesk.models.schema import Contact, Participant, Ticket, utcnow

log = logging.getLogger("postdesk.bounces")
_CHANGES = "postdesk.caps_changes"  # connection.info key: outbox and bounce writes through it


def note_change(connection: Connection) -> None:
    """Count a write through ``connection`` that may change what the caps on automatic mail
    read (an outbox row, a bounce flag): figures read before it are no longer current."""
    connection.info[_CHANGES] = connection.info.get(_CHANGES, 0) + 1


def changes_seen(connection: Connection) -> int:
    """How many such writes went through ``connection`` so far."""
    return int(connection.info.get(_CHANGES, 0))


def mark_bouncing(session: Session, addresses: Iterable[str], why: str) -> list[str]:
    """Flag each address as bouncing (creating its contact if needed); returns the newly flagged."""
    flagged = []
    for address in {a.strip().lower() for a in addresses if "@" in a}:
        insert_ignore(
            session,
            Contact.__table__,
            {"email": address, "name": "", "created_at": utcnow()},
            ["email"],
        )
        changed = session.execute(
            update(Contact)
            .where(Contact.email == address, Contact.bouncing.is_(False))
            .values(bouncing=True)
            .execution_options(synchronize_session=False)
        )
        note_change(session.connection())
        if getattr(changed, "rowcount", 0):
            flagged.append(address)
            log.warning("%s marked bouncing: %s", address, why)
    return flagged


def mark_bouncing_now(factory: sessionmaker[Session], addresses: Iterable[str], why: str) -> None:
    """:func:`mark_bouncing` in a transaction of its own (for the outbox sender)."""
    with transaction(factory) as session:
        mark_bouncing(session, addresses, why)


def clear_bouncing(session: Session, address: str) -> bool:
    """The contact wrote to us again: automatic mail may reach it again. True when it was set."""
    changed = session.execute(
        update(Contact)
        .where(Contact.email == address.lower(), Contact.bouncing.is_(True))
        .values(bouncing=False)
        .execution_options(synchronize_session=False)
    )
    note_change(session.connection())
    if getattr(changed, "rowcount", 0):
        log.warning("%s no longer bouncing: it wrote to us again", address)
        return True
    return False


def bouncing_participants(session: Session, ticket: Ticket) -> list[str]:
    """The ticket's participants whose address is bouncing."""
    query = (
        select(Participant.email)
        .join(Contact, Contact.email == Participant.email)
        .where(Participant.ticket_id == ticket.id, Contact.bouncing.is_(True))
        .order_by(Participant.email)
    )
    return list(session.scalars(query))
