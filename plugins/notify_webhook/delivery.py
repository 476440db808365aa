"""Delivering the webhook queue: lease due rows, POST them, record the outcome.

Rows are leased with one conditional UPDATE (several daemons on one database never POST the
same row at once) and POSTed on the plugins' loop over a few connections to the receivers kept
alive (:mod:`postdesk.plugins.httppool`). A 2xx answer marks the row sent; anything else (an error status, a
refused connection, a timeout) retries it with exponential backoff and jitter until
``max_attempts``, then marks it failed with the last error. Sent rows are deleted once
``keep_sent_days`` old; failed rows stay for inspection.

Each write transaction competes with the worker's on SQLite (one writer at a time), so a
round writes only when there is something to do: a read (which never waits for the writer)
finds whether anything is due, one UPDATE leases a batch, one UPDATE records its successes.
Each delivery is logged at DEBUG, failures at WARNING, and each round's outcome in one INFO line.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, delete, exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.store.db import in_list, transaction
from postdesk.models.schema import utcnow
from postdesk.models.webhooks import WebhookDelivery
from postdesk.plugins.httppool import HttpPool
from postdesk.plugins.notify_webhook.body import SIGNATURE_HEADER, signature

if TYPE_CHECKING:
    from postdesk.plugins.notify_webhook import WebhookSettings

log = logging.getLogger("postdesk.plugins.notify_webhook")

POLL_SECONDS = 1.0
BATCH = 100
SENDERS = 8  # POSTs at once, each over its own kept-alive connection
PURGE_SECONDS = 3600.0  # sent rows older than keep_sent_days are deleted this often
LEASE_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 3600.0
JITTER = 0.1


@dataclass(frozen=True)
class Claimed:
    """A queue row leased to this process for a POST."""

    id: int
    url: str
    event: str
    body: str
    attempts: int


# The columns of a row as Claimed holds them (RETURNING of a lease or of an insert).
CLAIMED_COLUMNS = (
    WebhookDelivery.id,
    WebhookDelivery.url,
    WebhookDelivery.event,
    WebhookDelivery.body,
    WebhookDelivery.attempts,
)


class Deliverer:
    """POSTs due rows of the queue; :meth:`run` loops, :meth:`deliver_due` does one round."""

    def __init__(
        self,
        settings: WebhookSettings,
        secret: bytes,
        factory: sessionmaker[Session],
        reader: sessionmaker[Session] | None = None,
    ) -> None:
        """Deliver with ``settings``, signing with ``secret``; ``reader`` (default ``factory``)
        looks for due rows without taking SQLite's write lock."""
        self.settings = settings
        self.secret = secret
        self.factory = factory
        self.reader = reader or factory
        self.counts = {"sent": 0, "retried": 0, "failed": 0, "purged": 0}
        self._loop: asyncio.AbstractEventLoop | None = None  # while run() runs
        self._handed: list[Claimed] = []  # rows queued leased to us (hand_over), not POSTed yet

    def lease(self, now: datetime) -> datetime | None:
        """The lease for rows queued to be handed over to :meth:`run` at once (see
        :meth:`hand_over`), or None when it does not run: such rows wait to be claimed."""
        return now + timedelta(seconds=LEASE_SECONDS) if self._loop is not None else None

    def hand_over(self, claimed: list[Claimed]) -> None:
        """From any thread, once their transaction has committed: rows leased to this process
        (:meth:`lease`), POSTed in the next round. Should :meth:`run` have stopped, they are
        claimed again once their lease runs out."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the leases run out
                loop.call_soon_threadsafe(self._handed.extend, claimed)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver every second until ``stop`` is set; database trouble waits for the next round."""
        purged_at = 0.0
        senders = HttpPool(SENDERS, self.settings.timeout_seconds)
        self._loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                try:
                    await self.deliver_due(senders)
                    if time.monotonic() - purged_at >= PURGE_SECONDS:
                        await asyncio.to_thread(self.purge)
                        purged_at = time.monotonic()
                except Exception as error:
                    log.warning("webhook round failed, will retry: %s", error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_SECONDS)
        finally:
            self._loop = None
            senders.close()
            await self._release_handed()
        log.info(
            "webhook deliveries stopped: %s", ", ".join(f"{v} {k}" for k, v in self.counts.items())
        )

    async def deliver_due(self, senders: HttpPool) -> int:
        """POST the rows due now through ``senders`` and record the outcomes in one
        transaction (few write transactions: on SQLite each one competes with the worker's)."""
        claimed, self._handed = self._handed, []
        if await asyncio.to_thread(self._any_due):
            claimed = sorted([*claimed, *await asyncio.to_thread(self._claim)], key=_by_id)
        if not claimed:
            return 0
        errors = await asyncio.gather(*(self._post(senders, item) for item in claimed))
        outcomes = await asyncio.to_thread(
            self._record_all, list(zip(claimed, errors, strict=True))
        )
        for item, error, outcome in outcomes:
            level = logging.DEBUG if error is None else logging.WARNING
            log.log(level, "webhook %s #%d to %s: %s", item.event, item.id, item.url, outcome)
        delivered = errors.count(None)
        log.info("webhook round: %d delivered, %d not", delivered, len(claimed) - delivered)
        return len(claimed)

    async def _post(self, senders: HttpPool, item: Claimed) -> str | None:
        """POST one row; None when the receiver took it (2xx), else what went wrong."""
        body = item.body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self.secret, body),
            "X-Postdesk-Event": item.event,
            "X-Postdesk-Delivery": str(item.id),
        }
        try:
            status, _answer = await senders.request("POST", item.url, body, headers)
        except (OSError, http.client.HTTPException) as failure:
            return f"{type(failure).__name__}: {' '.join(str(failure).split())}".rstrip(": ")
        return None if 200 <= status < 300 else f"HTTP {status}"

    def _any_due(self) -> bool:
        """True when a row is due: a read, which takes no write lock."""
        with self.reader() as session:
            return bool(session.scalar(select(exists().where(*self._due(utcnow())))))

    def _claim(self) -> list[Claimed]:
        """Lease up to BATCH due rows with one UPDATE; the rows this daemon got."""
        now = utcnow()
        due = select(WebhookDelivery.id).where(*self._due(now))
        due = due.order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(BATCH)
        lease = (
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(due.scalar_subquery()), *self._due(now))
            .values(claimed_until=now + timedelta(seconds=LEASE_SECONDS))
            .returning(*CLAIMED_COLUMNS)
            .execution_options(synchronize_session=False)
        )
        with transaction(self.factory) as session:
            rows = session.execute(lease).all()
        return sorted((Claimed(*row) for row in rows), key=_by_id)

    async def _release_handed(self) -> None:
        """Give up the leases of rows handed over and not POSTed (stopping): claimable again."""
        handed, self._handed = self._handed, []
        if handed:
            with contextlib.suppress(Exception):  # else their leases run out
                await asyncio.to_thread(self._release, [item.id for item in handed])

    def _release(self, ids: list[int]) -> None:
        with transaction(self.factory) as session:
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(in_list(ids)), WebhookDelivery.status == "pending")
                .values(claimed_until=None)
                .execution_options(synchronize_session=False)
            )

    @staticmethod
    def _due(now: datetime) -> tuple[Any, ...]:
        """Conditions of a row to POST now: pending, due, and leased by no one."""
        return (
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
        )

    def purge(self) -> int:
        """Delete the sent rows older than ``keep_sent_days``; failed rows stay. Returns the count."""
        cutoff = utcnow() - timedelta(days=self.settings.keep_sent_days)
        old = delete(WebhookDelivery).where(
            WebhookDelivery.status == "sent", WebhookDelivery.sent_at <= cutoff
        )
        with transaction(self.factory) as session:
            count = cast(CursorResult[Any], session.execute(old)).rowcount
        if count:
            days = self.settings.keep_sent_days
            log.info("webhook queue: deleted %d sent rows older than %s days", count, days)
        self.counts["purged"] += count
        return count

    def _record_all(
        self, results: list[tuple[Claimed, str | None]]
    ) -> list[tuple[Claimed, str | None, str]]:
        """Record every outcome of one round in one transaction (the successes in one UPDATE);
        describe each."""
        sent = [item.id for item, error in results if error is None]
        described: list[tuple[Claimed, str | None, str]] = []
        with transaction(self.factory) as session:
            if sent:
                session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_(in_list(sent)))
                    .values(
                        status="sent",
                        sent_at=utcnow(),
                        claimed_until=None,
                        attempts=WebhookDelivery.attempts + 1,
                    )
                    .execution_options(synchronize_session=False)
                )
            for item, error in results:
                outcome = "delivered" if error is None else self._failed(session, item, error)
                described.append((item, error, outcome))
        self.counts["sent"] += len(sent)
        return described

    def _failed(self, session: Session, item: Claimed, error: str) -> str:
        """Schedule the next attempt of a row whose POST failed, or fail it; say which."""
        attempts = item.attempts + 1
        row = session.get_one(WebhookDelivery, item.id)
        row.attempts, row.claimed_until, row.last_error = attempts, None, error[:2000]
        if attempts >= self.settings.max_attempts:
            row.status = "failed"
            self.counts["failed"] += 1
            return f"failed after {attempts} attempts: {error}"
        row.next_attempt_at = utcnow() + timedelta(seconds=self._backoff(item.attempts))
        self.counts["retried"] += 1
        return f"attempt {attempts} failed ({error}), retrying at {_hhmmss(row.next_attempt_at)}"

    def _backoff(self, attempts: int) -> float:
        delay = min(self.settings.retry_base_seconds * 2**attempts, MAX_BACKOFF_SECONDS)
        return float(delay + random.uniform(0, delay * JITTER))


def _by_id(item: Claimed) -> int:
    return item.id


def _hhmmss(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S")
