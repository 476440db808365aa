"""The worker: the one crash boundary per message, and the one place outcomes are handled.

It claims spooled messages, runs each through the pipeline, commits, then settles the spool
files. Messages are committed in groups (:meth:`Worker.process_batch`): up to
``processing.batch_size`` messages, or as many as start within ``processing.batch_ms``, each in
its own SAVEPOINT of one transaction, so a failing message rolls back only its own work. Spool
files are settled only after the commit: a crash at any moment leaves every message either
uncommitted and still spooled, or committed and recognised by the dedupe step when it comes
again. A database outage defers the messages without counting it against them; any other
error counts, and after ``processing.max_attempts`` the message goes to quarantine with the
reason.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable
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
from postdesk.daemon.store.db import leave_savepoints_open, ping, send_pending, transaction

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
        observer: Callable[[str, float], None] | None = None,
    ) -> None:
        self.services = services
        self.factory = factory
        self.spool = spool
        self.health = health
        self.observer = observer  # told each outcome and its seconds (the metrics)

    def drain(self) -> list[Outcome]:
        """Process until the spool is empty or the database is down (for ingest and replay)."""
        outcomes: list[Outcome] = []
        while batch := self.process_batch():
            outcomes.extend(batch)
            if any(outcome.disposition == "deferred" for outcome in batch):
                break
        return outcomes

    def process_batch(self) -> list[Outcome]:
        """Process a group of spooled messages committed together; empty when the spool is.

        Each message runs in its own savepoint; its spool file is settled after the commit.
        If the commit fails for another reason than an outage, each message runs alone.
        """
        processing = self.services.settings.processing
        first = self.spool.claim()
        if first is None:
            return []
        if processing.batch_size <= 1:
            return [self.process(first)]
        deadline = time.monotonic() + processing.batch_ms / 1000
        pending: list[_Pending] = []
        entry: SpoolEntry | None = first
        try:
            with transaction(self.factory) as session:
                leave_savepoints_open(session)  # one round trip fewer per message
                while entry is not None:
                    pending.append(self._in_savepoint(session, entry))
                    entry = None
                    if len(pending) < processing.batch_size and time.monotonic() < deadline:
                        entry = self.spool.claim()
        except DATABASE_DOWN as error:
            self.health.failed(error)
            unfinished = [] if entry is None else [_Pending(entry, time.monotonic(), _NONE, _keep)]
            return [self._defer(item, error) for item in [*pending, *unfinished]]
        except Exception as error:
            log.warning("batch of %d failed, one by one now: %s", len(pending), _one_line(error))
            again = [item.entry for item in pending] + ([] if entry is None else [entry])
            return [self.process(claimed) for claimed in again]
        self.health.recovered()
        outcomes = [item.settle() for item in pending]
        for item, outcome in zip(pending, outcomes, strict=True):
            self._report(outcome, item.started)
        return outcomes

    def _in_savepoint(self, session: Session, entry: SpoolEntry) -> _Pending:
        """Run one message inside a savepoint of ``session``; say how to settle it after commit.

        Raises the DATABASE_DOWN errors, which end the whole batch.
        """
        started = time.monotonic()
        ctx = MessageContext(self.services, session, entry.spool_id, entry.envelope, entry)
        try:
            _run_in_savepoint(ctx)
        except (Duplicate, Discard) as outcome:
            kind = "duplicate" if isinstance(outcome, Duplicate) else "discarded"
            result = Outcome(entry.spool_id, kind, _message_id(ctx), detail=outcome.reason)
            return _Pending(entry, started, result, self.spool.done)
        except Hold as held:
            return self._hold_in(session, entry, held.reason, ctx, started)
        except DATABASE_DOWN:
            raise
        except Exception as error:
            attempts = entry.attempts + 1
            log.error(
                "%s failed (attempt %d)",
                _message_id(ctx) or entry.spool_id,
                attempts,
                exc_info=error,
            )
            if attempts >= self.services.settings.processing.max_attempts:
                reason = (
                    f"failed {attempts} times, last: {type(error).__name__}: {_one_line(error)}"
                )
                return self._hold_in(session, entry, reason, ctx, started)
            result = Outcome(entry.spool_id, "retry", _message_id(ctx), detail=_one_line(error))
            return _Pending(entry, started, result, lambda e: self.spool.retry(e, True))
        assert ctx.ticket is not None
        result = Outcome(
            entry.spool_id, "stored", ctx.parsed.message_id, ctx.ticket.number, ctx.created
        )
        return _Pending(entry, started, result, self.spool.done, ctx.run_after_commit)

    def _hold_in(
        self,
        session: Session,
        entry: SpoolEntry,
        reason: str,
        ctx: MessageContext | None,
        started: float,
    ) -> _Pending:
        """Quarantine a message in the batch's transaction; its spool file goes after commit."""
        with session.begin_nested():
            quarantine.hold(session, entry, reason)
            send_pending(session)
        result = Outcome(entry.spool_id, "held", _message_id(ctx), detail=reason)
        return _Pending(
            entry, started, result, self.spool.done, lambda: self._alert_held(entry, reason)
        )

    def _defer(self, item: _Pending, error: BaseException) -> Outcome:
        """Requeue a message of a batch the database refused; only its own failure counts."""
        counted = item.outcome.disposition == "retry"
        self.spool.retry(item.entry, count_attempt=counted)
        result = Outcome(
            item.entry.spool_id, "deferred", item.outcome.message_id, detail=_one_line(error)
        )
        self._report(result, item.started)
        return result

    def process(self, entry: SpoolEntry) -> Outcome:
        """Run one claimed message through the pipeline and settle its spool file."""
        started = time.monotonic()
        ctx: MessageContext | None = None
        try:
            with transaction(self.factory) as session:
                ctx = MessageContext(self.services, session, entry.spool_id, entry.envelope, entry)
                for step in PIPELINE:
                    step(ctx)
        except (Duplicate, Discard) as outcome:
            kind = "duplicate" if isinstance(outcome, Duplicate) else "discarded"
            result = Outcome(entry.spool_id, kind, _message_id(ctx), detail=outcome.reason)
            self.spool.done(entry)  # after the Message-ID: the file may be read for it
        except Hold as held:
            result = self._hold(entry, held.reason, ctx)
        except DATABASE_DOWN as error:
            self.health.failed(error)
            result = Outcome(entry.spool_id, "deferred", _message_id(ctx), detail=_one_line(error))
            self.spool.retry(entry, count_attempt=False)
        except Exception as error:
            result = self._failed(entry, error, ctx)
        else:
            assert ctx is not None and ctx.ticket is not None
            self.health.recovered()
            self.spool.done(entry)
            ctx.run_after_commit()
            result = Outcome(
                entry.spool_id, "stored", ctx.parsed.message_id, ctx.ticket.number, ctx.created
            )
        self._report(result, started)
        return result

    def _report(self, outcome: Outcome, started: float) -> None:
        """Log one message's outcome and tell the observer (the metrics)."""
        _log_outcome(outcome, started)
        if self.observer is not None:
            self.observer(outcome.disposition, time.monotonic() - started)

    def _alert_held(self, entry: SpoolEntry, reason: str) -> None:
        """After commit: plugins hear that a message went to quarantine."""
        detail = {"spool_id": entry.spool_id, "reason": reason, "from": entry.envelope.mail_from}
        self.services.plugins.notify("alert.quarantined", None, detail)

    def _failed(self, entry: SpoolEntry, error: Exception, ctx: MessageContext | None) -> Outcome:
        attempts = entry.attempts + 1
        message_id = _message_id(ctx)
        log.error("%s failed (attempt %d)", message_id or entry.spool_id, attempts, exc_info=error)
        if attempts >= self.services.settings.processing.max_attempts:
            reason = f"failed {attempts} times, last: {type(error).__name__}: {_one_line(error)}"
            return self._hold(entry, reason, ctx)
        self.spool.retry(entry, count_attempt=True)
        return Outcome(entry.spool_id, "retry", message_id, detail=_one_line(error))

    def _hold(self, entry: SpoolEntry, reason: str, ctx: MessageContext | None) -> Outcome:
        message_id = _message_id(ctx)  # now: the file may be read for it, and is settled below
        try:
            with transaction(self.factory) as session:
                quarantine.hold(session, entry, reason)
        except DATABASE_DOWN as error:
            self.health.failed(error)
            self.spool.retry(entry, count_attempt=False)
            return Outcome(entry.spool_id, "deferred", message_id, detail=_one_line(error))
        self.spool.done(entry)
        self._alert_held(entry, reason)
        return Outcome(entry.spool_id, "held", message_id, detail=reason)

    def database_answers(self) -> bool:
        """Ping the database, recording whether it answered."""
        try:
            ping(self.factory.kw["bind"])
        except DATABASE_DOWN as error:
            self.health.failed(error)
            return False
        self.health.recovered()
        return True


@dataclass(frozen=True)
class _Pending:
    """A message of a batch whose outcome is known, waiting for the commit to settle its file."""

    entry: SpoolEntry
    started: float
    outcome: Outcome
    settle_file: Callable[[SpoolEntry], None]
    after_commit: Callable[[], None] = lambda: None  # plugin events of a stored message

    def settle(self) -> Outcome:
        """Settle the spool file after the commit, then fire its events; return the outcome."""
        self.settle_file(self.entry)
        self.after_commit()
        return self.outcome


def _run_in_savepoint(ctx: MessageContext) -> None:
    """Run the pipeline over ``ctx`` in a savepoint of its session.

    When the savepoint rolls back, every object leaves the session: rows the steps wrote at once
    (``store.db.add_row``) went with it, and the next message may be given their ids.
    """
    try:
        with ctx.session.begin_nested():
            for step in PIPELINE:
                step(ctx)
            send_pending(ctx.session)  # what is held back fails in this message's savepoint
    except BaseException:
        ctx.session.expunge_all()
        raise


_NONE = Outcome("", "")  # no outcome yet: the message was in hand when the database failed


def _keep(_entry: SpoolEntry) -> None:
    """Settling nothing (for a message whose outcome was never decided)."""


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
    fields = {
        "message_id": outcome.message_id,
        "spool_id": outcome.spool_id,
        "ticket": outcome.ticket,
        "outcome": outcome.disposition,
        "duration": round(elapsed_ms / 1000, 4),
    }
    log.log(
        level,
        "%s %s%s%s [%s, %.0f ms]",
        outcome.message_id or "<no message-id>",
        outcome.disposition,
        where,
        detail,
        outcome.spool_id,
        elapsed_ms,
        extra=fields,
    )
