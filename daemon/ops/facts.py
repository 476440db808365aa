"""The facts an operator watches, gathered once for ``/metrics``, ``/readyz`` and ``status``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import Settings
from postdesk.daemon.intake.spool import SUFFIX, Spool
from postdesk.models.schema import Base, OutboxItem, QuarantineItem


@dataclass(frozen=True)
class SpoolFacts:
    """The queue between intake and the worker."""

    depth: int
    oldest_age_seconds: float
    free_bytes: int
    disk_ok: bool  # free space above what intake needs to accept a largest message


@dataclass(frozen=True)
class DatabaseFacts:
    """What the database says about mail waiting to go out and mail held back."""

    outbox_pending: int
    outbox_retrying: int  # pending after at least one failed attempt
    outbox_failed: int  # given up after outbound.max_attempts
    quarantine_held: int


def spool_facts(settings: Settings, spool: Spool) -> SpoolFacts:
    """Depth and age of the spool (from its file names, which start with the arrival time)."""
    names = [
        name
        for folder in (spool.new, spool.work)
        for name in _listing(folder)
        if name.endswith(SUFFIX)
    ]
    stamps = [int(name[:20]) for name in names if name[:20].isdigit()]
    age = max(0.0, time.time() - min(stamps) / 1e9) if stamps else 0.0
    free = spool.free_bytes()
    return SpoolFacts(len(names), age, free, free >= 1.5 * settings.smtp.max_message_bytes)


def database_facts(factory: sessionmaker[Session]) -> DatabaseFacts:
    """Counts from the database; raises SQLAlchemy errors when it does not answer."""
    pending, failed = OutboxItem.status == "pending", OutboxItem.status == "failed"
    with factory() as session:
        return DatabaseFacts(
            outbox_pending=_count(session, OutboxItem, pending),
            outbox_retrying=_count(session, OutboxItem, pending, OutboxItem.attempts > 0),
            outbox_failed=_count(session, OutboxItem, failed),
            quarantine_held=_count(session, QuarantineItem, QuarantineItem.status == "held"),
        )


def _count(session: Session, model: type[Base], *where: ColumnElement[bool]) -> int:
    query = select(func.count()).select_from(model).where(*where)
    return int(session.execute(query).scalar_one())


def spool_writable(spool: Spool) -> bool:
    """Whether a file can be created in the spool right now (a probe in ``spool/tmp``)."""
    probe = spool.tmp / f".probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


def _listing(folder: os.PathLike[str]) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
