"""The outbox sender: delivers committed outbox rows to the relay, or into a Maildir.

Rows are claimed in small groups with a short lease (a conditional UPDATE of ``claimed_until``
and ``claimed_by``), renewed while they are being sent (``daemon/outbound/lease.py``), so several
daemons on one database never send the same row at the same time and a crashed daemon's rows
are free again within a minute. They are sent over ``outbound.connections`` persistent relay
connections in parallel (:mod:`postdesk.daemon.outbound.relaypool`); rows claimed but not
reached when the sender stops are released at once. A 5xx reply fails
the row for good; a 4xx reply, a timeout or a network error retries it with exponential
backoff until ``outbound.max_attempts``. Without a relay, each claim (up to ``MAILDIR_CLAIM``
rows) is written into ``<data_dir>/outbox-sent/new/`` as one group, its files flushed with one
``syncfs`` and the folder synced once (:mod:`postdesk.daemon.outbound.maildir`), under names derived
from the row ids, so sending again after a crash overwrites a file instead of duplicating it.
A drain goes on while mail never tried yet keeps being committed (a burst); mail rescheduled
during it waits for the next one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosmtplib
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import Settings
from postdesk.daemon.outbound import maildir
from postdesk.daemon.outbound.bounced import refused_for_good
from postdesk.daemon.outbound.lease import LEASE_SECONDS, kept
from postdesk.daemon.outbound.relaypool import RelayPool
from postdesk.daemon.statelog import StateLog
from postdesk.daemon.store.bounces import mark_bouncing_now
from postdesk.daemon.store.db import in_list, transaction
from postdesk.models.schema import OutboxItem, utcnow

log = logging.getLogger("postdesk.outbox")

POLL_SECONDS = 1.0
# The nap after a round that found mail. ``serve`` wakes the sender after each batch a worker
# commits (daemon/workerproc.py); mail committed elsewhere (another daemon, a worker restarted
# meanwhile) still goes out within this during a burst instead of up to a second later.
BUSY_POLL_SECONDS = 0.1
DELIVERY_DEADLINE_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 3600.0
JITTER = 0.1
# Rows claimed at once per parallel relay connection. Each group costs one write transaction (its
# outcomes recorded together with the claim of the next group) and on SQLite each waits for the
# worker's group commit to let go of the write lock: 8 per connection left the outbox 5-8 s
# behind the last ticket of a 3,000-mail burst, 32 ~2 s.
CLAIM_PER_CONNECTION = 32
# Rows claimed at once for the Maildir. A claim takes what is due, so a group is as big as the
# backlog that built up while the last one was written and the write lock awaited: small while
# the sender keeps pace, big after a long wait for the worker's commit (128 at most, with drains
# that stopped at the mail due when they began, left 7,564 mails and 4.5 s behind the last ticket
# of a 4,000-ticket burst). 552 mails took 0.85 s to write during a burst on a loaded machine;
# writing them again after a crash overwrites, never duplicates. A group's mails are all in
# memory at once: 1,024 kept the tail of a 20,000-mail burst at 0.2 s but grew the RSS of serve
# and worker by 12% over 100,000 mails (bench/bench_soak.py, target < 10%); 256 left a 0.6 s
# tail and 8%.
MAILDIR_CLAIM = 256
MAILDIR = "outbox-sent"
PENDING, SENT, FAILED = "pending", "sent", "failed"
# What may appear in MAIL FROM / RCPT TO as given: no spaces, controls or brackets.
_ENVELOPE_ADDRESS = re.compile(r"^[^\s<>\x00-\x1f\x7f]+@[^\s<>@\x00-\x1f\x7f]+$")


@dataclass(frozen=True)
class _Claimed:
    """A plain copy of one claimed outbox row, safe to use outside its session."""

    id: int
    message_id: str
    kind: str
    recipient: str
    recipients: list[str]
    envelope_from: str
    raw: bytes
    attempts: int


@dataclass(frozen=True)
class _Result:
    """How the delivery of one claimed row ended: sent or failed for good, with a note."""

    item: _Claimed
    status: str
    note: str


class PermanentFailure(Exception):
    """The relay refused the mail for good (5xx); sending it again cannot help.

    ``refused`` names the recipients the relay refused for good (they are marked bouncing).
    """

    def __init__(self, reason: str, refused: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.refused = refused


class OutboxSender:
    """Sends due outbox rows; run it as a task, or call :meth:`drain_once` (burst mode)."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        *,
        lease_seconds: float = LEASE_SECONDS,
        on_alert: Callable[[str, dict[str, object]], None] | None = None,
        owner: str = "",
    ) -> None:
        """Send with ``settings.outbound`` using sessions from ``factory``.

        ``owner`` (the daemon id) marks the rows this daemon claims; ``on_alert(event, detail)``
        hears of mail the relay refused for good (``alert.relay_refused``).
        """
        self._on_alert = on_alert
        self._settings = settings
        self._owner = owner
        self._factory = factory
        self._lease = timedelta(seconds=lease_seconds)
        self._wake = asyncio.Event()
        self._relays: RelayPool | None = None
        self.counts = {SENT: 0, FAILED: 0, "retried": 0}
        self._state = StateLog(log, "outbox")  # one line per change, not per round

    def wake(self) -> None:
        """Look for due rows now instead of at the next poll (call from the event loop)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Send due mail every second (every BUSY_POLL_SECONDS while a round finds some), or
        when woken, until ``stop`` is set."""
        while not stop.is_set():
            handled = 0
            try:
                handled = await self.send_due(stop)
            except Exception as exc:  # database unavailable: the next round tries again
                self._state.failed(" ".join(str(exc).split())[:300])
            else:
                self._state.recovered()
            await self.nap(stop, BUSY_POLL_SECONDS if handled else POLL_SECONDS)
        await self.close()
        log.info("outbox sender stopped: %s", ", ".join(f"{v} {k}" for k, v in self.counts.items()))

    async def drain_once(self) -> int:
        """Send everything that is due now; return how many rows were handled."""
        try:
            return await self.send_due(None)
        finally:
            await self.close()

    async def send_due(self, stop: asyncio.Event | None) -> int:
        """Send what is due now (and what is committed meanwhile, in a burst); relay connections
        stay open for the next call (:meth:`close`). Returns how many rows were handled."""
        # Rows rescheduled during this drain are due after ``started`` and wait for the next one.
        started = utcnow()
        handled = 0
        lanes = self._settings.outbound.connections
        limit = lanes * CLAIM_PER_CONNECTION if self._settings.outbound.relay else MAILDIR_CLAIM
        items: list[_Claimed] = []
        if stop is None or not stop.is_set():
            items = await asyncio.to_thread(self._claim_many, started, limit)
        while items:
            count, results = await self._handle_all(items, lanes, stop)
            handled += count
            more = 0 if stop is not None and stop.is_set() else limit
            items = []
            if results or more:  # one transaction: this group's outcomes, the next group's claim
                items = await asyncio.to_thread(self._finish, results, started, more)
        return handled

    async def _handle_all(
        self, items: list[_Claimed], lanes: int, stop: asyncio.Event | None
    ) -> tuple[int, list[_Result]]:
        """Deliver ``items`` over ``lanes`` parallel lanes; release those left when stopping.
        Returns how many were handled and the outcomes still to record (sent, failed)."""
        queue = iter(items)
        results: list[_Result] = []
        handled: list[int] = []
        unreached: list[int] = []

        async def lane() -> None:
            for item in queue:
                if stop is not None and stop.is_set():
                    unreached.append(item.id)
                    continue
                result = await self._handle(item)
                handled.append(item.id)
                if result is not None:
                    results.append(result)

        try:
            async with kept(self._factory, [item.id for item in items], self._owner, self._lease):
                if self._settings.outbound.relay:
                    await asyncio.gather(*(lane() for _ in range(min(lanes, len(items)))))
                elif stop is not None and stop.is_set():
                    unreached.extend(item.id for item in items)
                else:  # one group: its files flushed together (maildir.deliver)
                    results.extend(await self._to_maildir(items))
                    handled.extend(item.id for item in items)
        finally:
            if unreached:
                await asyncio.to_thread(self._release, unreached)
        return len(handled), results

    async def nap(self, stop: asyncio.Event, seconds: float) -> None:
        """Wait ``seconds``, or less when woken (:meth:`wake`) or stopped."""
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        self._wake.clear()

    def _claim(self, due: datetime) -> _Claimed | None:
        """Lease one row due at ``due``; the conditional UPDATE makes a concurrent claim lose."""
        claimed = self._claim_many(due, 1)
        return claimed[0] if claimed else None

    def _claim_many(self, due: datetime, limit: int) -> list[_Claimed]:
        """Lease up to ``limit`` rows due at ``due`` in one transaction, oldest first."""
        with transaction(self._factory) as session:
            rows = self._claim_in(session, due, limit)
        return _claimed(rows)

    def _claim_in(self, session: Session, due: datetime, limit: int) -> list[Any]:
        """Lease up to ``limit`` rows due at ``due`` in the caller's transaction, oldest first
        (read them with :func:`_claimed` after the commit)."""
        now = utcnow()
        free = or_(OutboxItem.claimed_until.is_(None), OutboxItem.claimed_until < now)
        # Mail never tried yet is due as soon as it is committed, so a drain keeps up with a
        # burst; a row rescheduled after ``due`` waits for the next drain.
        is_due = or_(
            OutboxItem.next_attempt_at <= due,
            and_(OutboxItem.attempts == 0, OutboxItem.next_attempt_at <= now),
        )
        candidates = session.scalars(
            select(OutboxItem.id)
            .where(OutboxItem.status == PENDING, is_due, free)
            .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
            .limit(limit)
        ).all()
        if not candidates:
            return []
        # One conditional UPDATE: a row another sender leased meanwhile is not returned. It
        # rewrites only the small outbox rows; the mails' bytes are read after it, mostly from
        # the tickets' message rows that keep them (OutboxItem.raw).
        claim = (
            update(OutboxItem)
            .where(OutboxItem.id.in_(in_list(candidates)), OutboxItem.status == PENDING, free)
            .values(claimed_until=now + self._lease, claimed_by=self._owner)
            .returning(OutboxItem.id)
            .execution_options(synchronize_session=False)
        )
        claimed = session.scalars(claim).all()
        if not claimed:
            return []
        rows = session.execute(
            select(
                OutboxItem.id,
                OutboxItem.message_id,
                OutboxItem.kind,
                OutboxItem.recipient,
                OutboxItem.recipients,
                OutboxItem.envelope_from,
                OutboxItem.raw,
                OutboxItem.attempts,
            ).where(OutboxItem.id.in_(in_list(claimed)))
        ).all()
        order = {item_id: position for position, item_id in enumerate(candidates)}
        return sorted(rows, key=lambda row: order[row.id])  # oldest first

    def _release(self, ids: list[int]) -> None:
        """Give up the lease of claimed rows that were not attempted (the sender is stopping)."""
        with transaction(self._factory) as session:
            session.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_(in_list(ids)), OutboxItem.status == PENDING)
                .values(claimed_until=None, claimed_by=None)
                .execution_options(synchronize_session=False)
            )

    async def _handle(self, item: _Claimed) -> _Result | None:
        """Deliver one claimed row; a retry is recorded (and logged) here, the rest returned."""
        try:
            note = await asyncio.wait_for(self._relay(item), DELIVERY_DEADLINE_SECONDS)
        except PermanentFailure as exc:
            if exc.refused:
                await asyncio.to_thread(mark_bouncing_now, self._factory, exc.refused, str(exc))
            if self._on_alert is not None:
                detail = {"message_id": item.message_id, "kind": item.kind, "reason": str(exc)}
                self._on_alert("alert.relay_refused", {**detail, "recipient": item.recipient})
            return _Result(item, FAILED, str(exc))
        except Exception as exc:  # 4xx, timeout, network or disk trouble: try again later
            outcome = await asyncio.to_thread(self._retry_later, item, _describe(exc))
            log.warning("%s %s to %s: %s", item.message_id, item.kind, item.recipient, outcome)
            return None
        return _Result(item, SENT, note)

    async def _to_maildir(self, items: list[_Claimed]) -> list[_Result]:
        """Write claimed rows into the Maildir as one group; a row that could not be written is
        retried later (recorded and logged here), the others are returned as sent."""
        root = self._settings.data_dir / MAILDIR
        errors = await asyncio.to_thread(
            maildir.deliver, root, [(item.id, item.raw) for item in items]
        )
        results: list[_Result] = []
        for item in items:
            error = errors[item.id]
            if error is None:
                results.append(_Result(item, SENT, ""))
                continue
            outcome = await asyncio.to_thread(self._retry_later, item, _describe(error))
            log.warning("%s %s to %s: %s", item.message_id, item.kind, item.recipient, outcome)
        return results

    async def _relay(self, item: _Claimed) -> str:
        """Hand the raw bytes to the relay; raise PermanentFailure on a 5xx reply."""
        for address in (item.envelope_from, *item.recipients):
            if not _ENVELOPE_ADDRESS.match(address):
                raise PermanentFailure(f"unsafe envelope address {address!r}")
        if self._relays is None:
            self._relays = RelayPool(self._settings.outbound)
        try:
            refused = await self._relays.send(item.raw, item.envelope_from, item.recipients)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(r.code >= 500 for r in exc.recipients):
                condemned = tuple(r.recipient for r in exc.recipients)
                raise PermanentFailure(_describe(exc), condemned) from exc
            raise
        except (
            aiosmtplib.SMTPSenderRefused,
            aiosmtplib.SMTPRecipientRefused,
            aiosmtplib.SMTPDataError,
        ) as exc:
            if exc.code >= 500:
                raise PermanentFailure(
                    _describe(exc), refused_for_good(exc, item.recipients)
                ) from exc
            raise
        except ValueError as exc:  # an address aiosmtplib will not put in a command
            raise PermanentFailure(str(exc)) from exc
        return "; ".join(f"{rcpt} refused: {r.code} {r.message}" for rcpt, r in refused.items())

    async def close(self) -> None:
        """Close the relay connections kept open between rounds (opened again when needed)."""
        if self._relays is not None:
            relays, self._relays = self._relays, None
            await relays.close()

    def _finish(
        self, results: list[_Result], due: datetime | None = None, limit: int = 0
    ) -> list[_Claimed]:
        """Record the sent and permanently failed rows of a group in one transaction and, with
        ``limit``, claim the next group (rows due at ``due``) in it; returns the claimed rows."""
        now = utcnow()
        # Mail sent without a note (nearly all of it) is recorded by one statement; the rest
        # row by row (on PostgreSQL an UPDATE per mail was a quarter of all statements).
        plain = [r.item.id for r in results if r.status == SENT and not r.note]
        changes = [
            {
                "id": r.item.id,
                "status": r.status,
                "attempts": r.item.attempts + 1,
                "claimed_until": None,
                "last_error": r.note[:2000],
                "sent_at": now if r.status == SENT else None,
            }
            for r in results
            if r.status != SENT or r.note
        ]
        with transaction(self._factory) as session:
            if plain:
                session.execute(
                    update(OutboxItem)
                    .where(OutboxItem.id.in_(in_list(plain)))
                    .values(
                        status=SENT,
                        attempts=OutboxItem.attempts + 1,
                        claimed_until=None,
                        last_error="",
                        sent_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
            if changes:
                session.execute(update(OutboxItem), changes)
            rows = self._claim_in(session, due, limit) if due is not None and limit else []
        for result in results:
            self.counts[result.status] += 1
        _log_results(results)  # here, not on the event loop: a line per mail adds up in a burst
        return _claimed(rows)  # after the commit: a row it cannot read undoes no outcome

    def _retry_later(self, item: _Claimed, error: str) -> str:
        """Reschedule with exponential backoff, or fail the row after max_attempts."""
        outbound = self._settings.outbound
        attempts = item.attempts + 1
        with transaction(self._factory) as session:
            row = session.get_one(OutboxItem, item.id)
            row.attempts = attempts
            row.claimed_until = None
            row.last_error = error[:2000]
            if attempts >= outbound.max_attempts:
                row.status = FAILED
                self.counts[FAILED] += 1
                return f"failed after {attempts} attempts: {error}"
            delay = min(outbound.retry_base_seconds * 2**item.attempts, MAX_BACKOFF_SECONDS)
            delay += random.uniform(0, delay * JITTER)
            row.next_attempt_at = utcnow() + timedelta(seconds=delay)
        self.counts["retried"] += 1
        return f"attempt {attempts} failed, retry in {delay:.3g}s: {error}"


def _claimed(rows: list[Any]) -> list[_Claimed]:
    """Plain copies of claimed rows."""
    return [
        _Claimed(
            row.id,
            row.message_id,
            row.kind,
            row.recipient,
            json.loads(row.recipients),
            row.envelope_from,
            row.raw,
            row.attempts,
        )
        for row in rows
    ]


def _log_results(results: list[_Result]) -> None:
    """One line per recorded outcome."""
    for result in results:
        item = result.item
        if result.status == SENT:
            outcome, level = (f"sent ({result.note})" if result.note else "sent"), logging.INFO
        else:
            outcome, level = f"failed permanently: {result.note}", logging.WARNING
        log.log(level, "%s %s to %s: %s", item.message_id, item.kind, item.recipient, outcome)


def _describe(exc: BaseException) -> str:
    """One line naming the error, without a traceback."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{exc.code} {' '.join(exc.message.split())}"
    elif isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
    else:
        text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
