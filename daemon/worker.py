"""The worker: the one crash boundary per message, and the one place outcomes are handled.

It claims a spooled message, runs the pipeline in one transaction, then removes the spool file.
A database outage defers the message without counting it against the message; any other error
counts, and after ``processing.max_attempts`` the message goes to quarantine with the reason.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.intake.spool import Spool, SpoolEntry
from postdesk.daemon.mail import sniff
from postdesk.daemon.pipeline import Discard, Duplicate, Hold, MessageContext
from postdesk.daemon.services import Services
from postdesk.daemon.statelog import StateLog
from postdesk.daemon.steps import PIPELINE
from postdesk.daemon.store import quarantine
from postdesk.daemon.store.db import ping, transaction

log = logging.getLogger("postdesk.worker")

DATABASE_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


@dataclass(frozen=True)
class Outcome:
    """What became of one message: stored, duplicate, discarded, held, retry or deferred."""

    spool_id: str
    disposition: str
    message_id: str = ""
    ticket: int | None = None
    created: bool = False
    detail: str = ""


class Flag(Protocol):
    """A small integer shared between processes (a lock-free ``multiprocessing.Value``)."""

    value: int


class DatabaseHealth:
    """Whether the database answered last time; intake answers 451 while it does not.

    The flag lives in shared memory so that intake (in the parent process) sees what the
    worker process learns.
    """

    def __init__(self, flag: Flag | None = None) -> None:
        self._flag: Flag = flag if flag is not None else multiprocessing.Value("b", 1, lock=False)
        self.failures = 0
        self._log = StateLog(log, "database")

    @property
    def ok(self) -> bool:
        """True while the database answers."""
        return bool(self._flag.value)

    @ok.setter
    def ok(self, value: bool) -> None:
        self._flag.value = int(value)

    def failed(self, error: BaseException) -> None:
        """Record a failed database call."""
        self._log.failed(_one_line(error))
        self.ok = False
        self.failures += 1

    def recovered(self) -> None:
        """Record that the database answers again."""
        self._log.recovered()
        self.ok, self.failures = True, 0


class Worker:
    """Drains the spool through the pipeline."""

    def __init__(
        self,
        services: Services,
        factory: sessionmaker[Session],
        spool: Spool,
        health: DatabaseHealth,
    ) -> None:
        self.services = services
        self.factory = factory
        self.spool = spool
        self.health = health

    def process_next(self) -> Outcome | None:
        """Process the oldest spooled message; None when the spool is empty."""
        entry = self.spool.claim()
        return None if entry is None else self.process(entry)

    def drain(self) -> list[Outcome]:
        """Process until the spool is empty or the database is down (for ingest and replay)."""
        outcomes: list[Outcome] = []
        while (outcome := self.process_next()) is not None:
            outcomes.append(outcome)
            if outcome.disposition == "deferred":
                break
        return outcomes

    def process(self, entry: SpoolEntry) -> Outcome:
        """Run one claimed message through the pipeline and settle its spool file."""
        started = time.monotonic()
        ctx: MessageContext | None = None
        try:
            with transaction(self.factory) as session:
                ctx = MessageContext(
                    self.services, session, entry.spool_id, entry.envelope, entry.raw
                )
                for step in PIPELINE:
                    step(ctx)
        except (Duplicate, Discard) as outcome:
            self.spool.done(entry)
            kind = "duplicate" if isinstance(outcome, Duplicate) else "discarded"
            result = Outcome(entry.spool_id, kind, _message_id(ctx), detail=outcome.reason)
        except Hold as held:
            result = self._hold(entry, held.reason, ctx)
        except DATABASE_DOWN as error:
            self.health.failed(error)
            self.spool.retry(entry, count_attempt=False)
            result = Outcome(entry.spool_id, "deferred", _message_id(ctx), detail=_one_line(error))
        except Exception as error:
            result = self._failed(entry, error, ctx)
        else:
            assert ctx is not None and ctx.ticket is not None
            self.health.recovered()
            self.spool.done(entry)
            result = Outcome(
                entry.spool_id, "stored", ctx.parsed.message_id, ctx.ticket.number, ctx.created
            )
        _log_outcome(result, started)
        return result

    def _failed(self, entry: SpoolEntry, error: Exception, ctx: MessageContext | None) -> Outcome:
        attempts = entry.attempts + 1
        log.error(
            "%s failed (attempt %d)", _message_id(ctx) or entry.spool_id, attempts, exc_info=error
        )
        if attempts >= self.services.settings.processing.max_attempts:
            reason = f"failed {attempts} times, last: {type(error).__name__}: {_one_line(error)}"
            return self._hold(entry, reason, ctx)
        self.spool.retry(entry, count_attempt=True)
        return Outcome(entry.spool_id, "retry", _message_id(ctx), detail=_one_line(error))

    def _hold(self, entry: SpoolEntry, reason: str, ctx: MessageContext | None) -> Outcome:
        try:
            with transaction(self.factory) as session:
                quarantine.hold(session, entry, reason)
        except DATABASE_DOWN as error:
            self.health.failed(error)
            self.spool.retry(entry, count_attempt=False)
            return Outcome(entry.spool_id, "deferred", _message_id(ctx), detail=_one_line(error))
        self.spool.done(entry)
        return Outcome(entry.spool_id, "held", _message_id(ctx), detail=reason)

    def database_answers(self) -> bool:
        """Ping the database, recording whether it answered."""
        try:
            ping(self.factory.kw["bind"])
        except DATABASE_DOWN as error:
            self.health.failed(error)
            return False
        self.health.recovered()
        return True


def _message_id(ctx: MessageContext | None) -> str:
    parsed = getattr(ctx, "parsed", None) if ctx is not None else None
    if parsed is not None:
        return str(parsed.message_id)
    return sniff.message_id(ctx.raw) if ctx is not None else ""  # mail the parser refused


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300]


def _log_outcome(outcome: Outcome, started: float) -> None:
    elapsed_ms = (time.monotonic() - started) * 1000
    where = (
        f" ticket #{outcome.ticket}{' (new)' if outcome.created else ''}" if outcome.ticket else ""
    )
    detail = f": {outcome.detail}" if outcome.detail else ""
    level = (
        logging.WARNING if outcome.disposition in ("held", "retry", "deferred") else logging.INFO
    )
    log.log(
        level,
        "%s %s%s%s [%s, %.0f ms]",
        outcome.message_id or "<no message-id>",
        outcome.disposition,
        where,
        detail,
        outcome.spool_id,
        elapsed_ms,
    )
