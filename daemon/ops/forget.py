"""``postdesk forget EMAIL``: erase a person on request, keeping the statistics.

What goes: the text and raw bytes of the person's messages and of every message on the tickets
they opened (replies quote them; acknowledgements repeat their subject), those tickets'
subjects, the attachments of those messages and the raw files of the large ones (the files
unless another message still uses the same content), their contact card, quarantined mail from
them, outgoing mail to them (rows and the Maildir copies), and unprocessed spool files from
them. What stays: ticket numbers, statuses, timings and the event log, with the address
replaced by a pseudonym, and one ``erased`` event on each of their tickets.

On SQLite the file is vacuumed with ``secure_delete`` on and the write-ahead log truncated, so
no freed page keeps the old bytes. On PostgreSQL, old row versions stay in the server's files
until its vacuum reuses them (see docs/deployment.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from postdesk.daemon.config import Settings
from postdesk.daemon.store.attachments import blob_path
from postdesk.daemon.store.db import make_engine, session_factory, transaction
from postdesk.models.schema import (
    Attachment,
    Contact,
    Event,
    Message,
    OutboxItem,
    Participant,
    QuarantineItem,
    Ticket,
    utcnow,
)

log = logging.getLogger("postdesk.ops")

MAILDIR = "outbox-sent"
ACTOR = "postdesk forget"
VACUUMED = ("messages", "attachments", "tickets", "outbox", "quarantine", "events")


@dataclass
class ErasurePlan:
    """What an erasure touches; printed by ``--dry-run`` and carried out otherwise."""

    email: str
    pseudonym: str
    tickets: dict[int, int] = field(default_factory=dict)  # ticket id -> number they opened
    messages: list[int] = field(default_factory=list)
    attachments: list[int] = field(default_factory=list)
    outbox: list[int] = field(default_factory=list)
    quarantine: list[int] = field(default_factory=list)
    contact: bool = False
    files: list[Path] = field(default_factory=list)  # blobs not shared, Maildir, spool

    def lines(self) -> list[str]:
        """Human-readable lines: what goes and what stays."""
        numbers = ", ".join(f"#{n}" for n in sorted(self.tickets.values())) or "none"
        return [
            f"tickets they opened: {numbers} (numbers, statuses and timings kept)",
            f"their address becomes {self.pseudonym}",
            f"messages erased (text and raw mail): {len(self.messages)}",
            f"attachments removed: {len(self.attachments)}",
            f"outgoing mails erased: {len(self.outbox)}",
            f"quarantined mails deleted: {len(self.quarantine)}",
            f"contact card: {'deleted' if self.contact else 'none'}",
            f"files deleted (attachments and raw mail not shared, sent-mail copies, spool): "
            f"{len(self.files)}",
        ]


def forget(settings: Settings, email: str, dry_run: bool) -> ErasurePlan:
    """Erase ``email`` from the database and data dir (or only plan it, with ``dry_run``)."""
    address = email.strip().lower()
    engine = make_engine(settings.database_url)
    try:
        with transaction(session_factory(engine)) as session:
            if engine.dialect.name == "sqlite":
                session.execute(text("PRAGMA secure_delete=ON"))
            plan = _plan(session, settings.data_dir, address)
            if dry_run:
                session.rollback()
                return plan
            _erase(session, plan)
        for path in plan.files:
            path.unlink(missing_ok=True)
        _compact(engine)
    finally:
        engine.dispose()
    log.warning("erased a person on request as %s: %s", plan.pseudonym, "; ".join(plan.lines()))
    return plan


def _plan(session: Session, data_dir: Path, address: str) -> ErasurePlan:
    plan = ErasurePlan(address, f"erased-{secrets.token_hex(6)}@erased.invalid")
    rows = session.execute(
        select(Ticket.id, Ticket.number).where(func.lower(Ticket.requester) == address)
    )
    plan.tickets = {ticket_id: number for ticket_id, number in rows}
    theirs = or_(
        Message.ticket_id.in_(plan.tickets),
        (Message.direction == "in") & (func.lower(Message.author) == address),
    )
    messages = session.execute(select(Message.id, Message.raw_sha256).where(theirs)).all()
    plan.messages = [row.id for row in messages]
    attachments = session.execute(
        select(Attachment.id, Attachment.sha256).where(Attachment.message_pk.in_(plan.messages))
    ).all()
    plan.attachments = [row.id for row in attachments]
    digests = {row.sha256 for row in attachments} | {r.raw_sha256 for r in messages if r.raw_sha256}
    plan.files += [blob_path(data_dir, digest) for digest in _unshared(session, plan, digests)]
    to_them = or_(
        OutboxItem.ticket_id.in_(plan.tickets),
        func.lower(OutboxItem.recipient) == address,
        func.lower(OutboxItem.recipients).contains(address, autoescape=True),
    )
    plan.outbox = list(session.execute(select(OutboxItem.id).where(to_them)).scalars())
    for row_id in plan.outbox:
        for sub in ("new", "cur"):
            plan.files += sorted((data_dir / MAILDIR / sub).glob(f"{row_id:010d}.postdesk.eml*"))
    needle = address.encode()
    held = session.execute(select(QuarantineItem.id, QuarantineItem.envelope, QuarantineItem.raw))
    plan.quarantine = [
        row.id for row in held if needle in row.raw.lower() or address in row.envelope.lower()
    ]
    card = select(Contact.id).where(func.lower(Contact.email) == address)
    plan.contact = session.execute(card).first() is not None
    plan.files += [path for path in _spool_files(data_dir) if _mentions(path, needle)]
    return plan


def _unshared(session: Session, plan: ErasurePlan, digests: set[str]) -> list[str]:
    """The blobs (attachments, raw files of large messages) that only the plan's messages use."""
    shared = set(
        session.execute(
            select(Attachment.sha256).where(
                Attachment.sha256.in_(digests), Attachment.message_pk.not_in(plan.messages)
            )
        ).scalars()
    )
    raw_files = select(Message.raw_sha256).where(
        Message.raw_sha256.in_(digests), Message.id.not_in(plan.messages)
    )
    shared.update(digest for digest in session.execute(raw_files).scalars() if digest)
    return sorted(digests - shared)


def _erase(session: Session, plan: ErasurePlan) -> None:
    """Carry out the plan in the caller's transaction (files are removed after commit)."""
    address, pseudonym = plan.email, plan.pseudonym
    session.execute(
        update(Message)
        .where(Message.id.in_(plan.messages))
        .values(subject="", text="", new_text="", raw=b"", raw_sha256=None, defects="")
    )
    session.execute(
        update(Message).where(func.lower(Message.author) == address).values(author=pseudonym)
    )
    session.execute(delete(Attachment).where(Attachment.id.in_(plan.attachments)))
    session.execute(
        update(Ticket).where(Ticket.id.in_(plan.tickets)).values(subject="", requester=pseudonym)
    )
    session.execute(
        update(Participant).where(func.lower(Participant.email) == address).values(email=pseudonym)
    )
    session.execute(delete(Contact).where(func.lower(Contact.email) == address))
    session.execute(
        update(OutboxItem)
        .where(OutboxItem.id.in_(plan.outbox))
        .values(
            stored_raw=b"",
            message_pk=None,  # nor read from the ticket's copy (kept if on another's ticket)
            recipient=pseudonym,
            recipients=json.dumps([pseudonym]),
        )
    )
    session.execute(
        update(OutboxItem)
        .where(OutboxItem.id.in_(plan.outbox), OutboxItem.status == "pending")
        .values(status="failed", last_error="erased on request before it was sent")
    )
    session.execute(delete(QuarantineItem).where(QuarantineItem.id.in_(plan.quarantine)))
    _rewrite_events(session, plan)
    for ticket_id in plan.tickets:
        detail = {"pseudonym": pseudonym, "messages": len(plan.messages)}
        session.add(
            Event(
                ticket_id=ticket_id,
                at=utcnow(),
                actor=ACTOR,
                kind="erased",
                detail=json.dumps(detail),
            )
        )


def _rewrite_events(session: Session, plan: ErasurePlan) -> None:
    """Put the pseudonym wherever the address appears in the event log."""
    pattern = re.compile(re.escape(plan.email), re.IGNORECASE)
    mentioning = or_(
        func.lower(Event.actor) == plan.email,
        func.lower(Event.detail).contains(plan.email, autoescape=True),
    )
    for event in session.execute(select(Event).where(mentioning)).scalars():
        event.actor = pattern.sub(plan.pseudonym, event.actor)
        event.detail = pattern.sub(plan.pseudonym, event.detail)


def _mentions(path: Path, needle: bytes) -> bool:
    """Whether the file holds ``needle`` (lower case); False once a worker took it away."""
    try:
        return needle in path.read_bytes().lower()
    except FileNotFoundError:
        return False


def _spool_files(data_dir: Path) -> list[Path]:
    """Waiting spool files, and settled ones not deleted yet (a crash left them in ``done/``)."""
    files: list[Path] = []
    for folder in (data_dir / "spool" / "new", data_dir / "spool" / "done"):
        with contextlib.suppress(FileNotFoundError):
            files += [folder / name for name in sorted(os.listdir(folder))]
    return files


def _compact(engine: Engine) -> None:
    """Leave no freed page with the old bytes: SQLite is vacuumed and its WAL truncated."""
    if engine.dialect.name != "sqlite":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f"VACUUM {', '.join(VACUUMED)}"))
        return
    raw = engine.raw_connection()  # VACUUM cannot run inside the BEGIN IMMEDIATE we add
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("VACUUM")
        busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            log.warning("the write-ahead log is in use; run postdesk forget again when idle")
    finally:
        raw.close()
