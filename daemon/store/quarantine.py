"""Quarantine: messages that cannot be processed, kept with the reason and their raw bytes."""

from __future__ import annotations

import json
import time
from dataclasses import asdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from postdesk.daemon.intake.spool import Envelope, Spool, SpoolEntry
from postdesk.daemon.store.db import insert_ignore
from postdesk.models.schema import QuarantineItem, utcnow


def hold(session: Session, entry: SpoolEntry, reason: str) -> None:
    """Keep a spooled message in quarantine; holding the same spool entry twice keeps one record."""
    insert_ignore(
        session,
        QuarantineItem.__table__,
        {
            "spool_id": entry.spool_id,
            "reason": reason,
            "channel": entry.envelope.channel,
            "envelope": json.dumps(asdict(entry.envelope)),
            "raw": entry.raw,
            "attempts": entry.attempts + 1,
            "status": "held",
            "created_at": utcnow(),
        },
        ["spool_id"],
    )


def held(session: Session, include_replayed: bool = False) -> list[QuarantineItem]:
    """Quarantined messages, oldest first."""
    query = select(QuarantineItem).order_by(QuarantineItem.id)
    if not include_replayed:
        query = query.where(QuarantineItem.status == "held")
    return list(session.execute(query).scalars())


def replay(session: Session, spool: Spool, item: QuarantineItem) -> str:
    """Send a held message through the pipeline again: respool it and mark it replayed."""
    original = json.loads(item.envelope)
    envelope = Envelope(
        mail_from=original.get("mail_from", ""),
        rcpt_tos=tuple(original.get("rcpt_tos", ())),
        channel=original.get("channel", item.channel),
        received_at=time.time(),
        peer="replay",
    )
    spool_id = spool.write(item.raw, envelope)
    item.status = "replayed"
    return spool_id
