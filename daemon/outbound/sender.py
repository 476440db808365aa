"""The outbox sender: delivers committed outbox rows to the relay, or into a Maildir.

Rows are claimed one at a time with a lease (a conditional UPDATE of ``claimed_until``), so
several daemons on one database never send the same row at the same time; the lease is short
and renewed while the mail is sent (``daemon/outbound/lease.py``). A 5xx reply fails
the row for good; a 4xx reply, a timeout or a network error retries it with exponential
backoff until ``outbound.max_attempts``. Without a relay, mail goes into
``<data_dir>/outbox-sent/new/`` under a name derived from the row id, so sending again after
a crash overwrites the file instead of duplicating it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import aiosmtplib
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import Settings, secret_value
from postdesk.daemon.outbound.bounced import refused_for_good
from postdesk.daemon.outbound.lease import LEASE_SECONDS, kept
from postdesk.daemon.statelog import StateLog
from postdesk.daemon.store.bounces import mark_bouncing_now
from postdesk.daemon.store.db import transaction
from postdesk.models.schema import OutboxItem, utcnow

log = logging.getLogger("postdesk.outbox")

POLL_SECONDS = 1.0
SMTP_TIMEOUT_SECONDS = 30.0
DELIVERY_DEADLINE_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 3600.0
JITTER = 0.1
CLAIM_SCAN = 20
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
        owner: str = "",
    ) -> None:
        """Send with ``settings.outbound`` using sessions from ``factory``; ``owner`` (the
        daemon_id) marks the rows this daemon claims."""
        self._settings = settings
        self._owner = owner
        self._factory = factory
        self._lease = timedelta(seconds=lease_seconds)
        self._wake = asyncio.Event()
        self.counts = {SENT: 0, FAILED: 0, "retried": 0}
        self._state = StateLog(log, "outbox")  # one line per change, not per round

    def wake(self) -> None:
        """Look for due rows now instead of at the next poll (call from the event loop)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Send due mail every second, or when woken, until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self._drain(stop)
            except Exception as exc:  # database unavailable: the next round tries again
                self._state.failed(" ".join(str(exc).split())[:300])
            else:
                self._state.recovered()
            await self._nap(stop)
        log.info("outbox sender stopped: %s", ", ".join(f"{v} {k}" for k, v in self.counts.items()))

    async def drain_once(self) -> int:
        """Send everything that is due now; return how many rows were handled."""
        return await self._drain(None)

    async def _drain(self, stop: asyncio.Event | None) -> int:
        # Rows rescheduled during this drain are due after ``started`` and wait for the next one.
        started = utcnow()
        handled = 0
        while stop is None or not stop.is_set():
            item = await asyncio.to_thread(self._claim, started)
            if item is None:
                break
            async with kept(self._factory, item.id, self._owner, self._lease):
                await self._handle(item)
            handled += 1
        return handled

    async def _nap(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        self._wake.clear()

    def _claim(self, due: datetime) -> _Claimed | None:
        """Lease one row due at ``due``; the conditional UPDATE makes a concurrent claim lose."""
        now = utcnow()
        free = or_(OutboxItem.claimed_until.is_(None), OutboxItem.claimed_until < now)
        with transaction(self._factory) as session:
            candidates = session.scalars(
                select(OutboxItem.id)
                .where(OutboxItem.status == PENDING, OutboxItem.next_attempt_at <= due, free)
                .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
                .limit(CLAIM_SCAN)
            ).all()
            for item_id in candidates:
                claim = (
                    update(OutboxItem)
                    .where(OutboxItem.id == item_id, OutboxItem.status == PENDING, free)
                    .values(claimed_until=now + self._lease, claimed_by=self._owner)
                    .execution_options(synchronize_session=False)
                )
                if cast(CursorResult[Any], session.execute(claim)).rowcount != 1:
                    continue  # another sender got it first
                row = session.get_one(OutboxItem, item_id)
                return _Claimed(
                    row.id,
                    row.message_id,
                    row.kind,
                    row.recipient,
                    json.loads(row.recipients),
                    row.envelope_from,
                    row.raw,
                    row.attempts,
                )
        return None

    async def _handle(self, item: _Claimed) -> None:
        """Deliver one claimed row and record the outcome; one log line per mail."""
        level = logging.WARNING
        try:
            note = await asyncio.wait_for(self._deliver(item), DELIVERY_DEADLINE_SECONDS)
        except PermanentFailure as exc:
            await asyncio.to_thread(self._finish, item, FAILED, str(exc))
            if exc.refused:
                await asyncio.to_thread(mark_bouncing_now, self._factory, exc.refused, str(exc))
            outcome = f"failed permanently: {exc}"
        except Exception as exc:  # 4xx, timeout, network or disk trouble: try again later
            outcome = await asyncio.to_thread(self._retry_later, item, _describe(exc))
        else:
            await asyncio.to_thread(self._finish, item, SENT, note)
            outcome, level = (f"sent ({note})" if note else "sent"), logging.INFO
        log.log(level, "%s %s to %s: %s", item.message_id, item.kind, item.recipient, outcome)

    async def _deliver(self, item: _Claimed) -> str:
        if self._settings.outbound.relay:
            return await self._relay(item)
        await asyncio.to_thread(self._write_maildir, item)
        return ""

    async def _relay(self, item: _Claimed) -> str:
        """Hand the raw bytes to the relay; raise PermanentFailure on a 5xx reply."""
        outbound = self._settings.outbound
        url = urlsplit(outbound.relay)
        if not url.hostname:
            raise RuntimeError(f"outbound.relay has no host: {outbound.relay!r}")
        for address in (item.envelope_from, *item.recipients):
            if not _ENVELOPE_ADDRESS.match(address):
                raise PermanentFailure(f"unsafe envelope address {address!r}")
        secure = url.scheme == "smtps"
        password = secret_value(outbound.password, outbound.password_env, "outbound.password")
        try:
            refused, _reply = await aiosmtplib.send(
                item.raw,
                sender=item.envelope_from,
                recipients=item.recipients,
                hostname=url.hostname,
                port=url.port or (465 if secure else 25),
                username=outbound.username or None,
                password=(password or None) if outbound.username else None,
                timeout=SMTP_TIMEOUT_SECONDS,
                use_tls=secure,
                start_tls=False if secure else None,  # None: STARTTLS when the server offers it
            )
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

    def _write_maildir(self, item: _Claimed) -> None:
        """Write tmp/, flush, fsync, rename into new/ under a name fixed by the row id."""
        root = self._settings.data_dir / MAILDIR
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        name = f"{item.id:010d}.postdesk.eml"
        if any((root / "cur").glob(f"{name}*")):
            return  # already delivered and picked up by a reader
        tmp = root / "tmp" / f"{name}.{os.getpid()}"
        with tmp.open("wb") as handle:
            handle.write(item.raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, root / "new" / name)
        directory = os.open(root / "new", os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _finish(self, item: _Claimed, status: str, note: str) -> None:
        with transaction(self._factory) as session:
            row = session.get_one(OutboxItem, item.id)
            row.status = status
            row.attempts = item.attempts + 1
            row.claimed_until = None
            row.last_error = note[:2000]
            if status == SENT:
                row.sent_at = utcnow()
        self.counts[status] += 1

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


def _describe(exc: BaseException) -> str:
    """One line naming the error, without a traceback."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{exc.code} {' '.join(exc.message.split())}"
    elif isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
    else:
        text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
