"""Delivering the webhook queue: lease due rows, POST them, record the outcome.

Rows are leased with a conditional UPDATE (several daemons on one database never POST the
same row at once). A 2xx answer marks the row sent; anything else (an error status, a
refused connection, a timeout) retries it with exponential backoff and jitter until
``max_attempts``, then marks it failed with the last error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import httpx
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.store.db import transaction
from postdesk.models.schema import utcnow
from postdesk.models.webhooks import WebhookDelivery
from postdesk.plugins.notify_webhook.body import SIGNATURE_HEADER, signature

if TYPE_CHECKING:
    from postdesk.plugins.notify_webhook import WebhookSettings

log = logging.getLogger("postdesk.plugins.notify_webhook")

POLL_SECONDS = 1.0
BATCH = 100
LEASE_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 3600.0
JITTER = 0.1


@dataclass(frozen=True)
class _Claimed:
    id: int
    url: str
    event: str
    body: str
    attempts: int


class Deliverer:
    """POSTs due rows of the queue; :meth:`run` loops, :meth:`deliver_due` does one round."""

    def __init__(
        self, settings: WebhookSettings, secret: bytes, factory: sessionmaker[Session]
    ) -> None:
        """Deliver with ``settings``, signing with ``secret``."""
        self.settings = settings
        self.secret = secret
        self.factory = factory
        self.counts = {"sent": 0, "retried": 0, "failed": 0}

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver every second until ``stop`` is set; database trouble waits for the next round."""
        async with httpx.AsyncClient(timeout=self.settings.timeout_seconds) as client:
            while not stop.is_set():
                try:
                    await self.deliver_due(client)
                except Exception as error:
                    log.warning("webhook round failed, will retry: %s", error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_SECONDS)
        log.info(
            "webhook deliveries stopped: %s", ", ".join(f"{v} {k}" for k, v in self.counts.items())
        )

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """POST the rows due now, concurrently, and record the outcomes in one transaction
        (few write transactions: on SQLite each one competes with the worker's)."""
        claimed = await asyncio.to_thread(self._claim)
        if not claimed:
            return 0
        errors = await asyncio.gather(*(self._post(client, item) for item in claimed))
        outcomes = await asyncio.to_thread(
            self._record_all, list(zip(claimed, errors, strict=True))
        )
        for item, error, outcome in outcomes:
            level = logging.INFO if error is None else logging.WARNING
            log.log(level, "webhook %s #%d to %s: %s", item.event, item.id, item.url, outcome)
        return len(claimed)

    async def _post(self, client: httpx.AsyncClient, item: _Claimed) -> str | None:
        """POST one row; None when the receiver took it (2xx), else what went wrong."""
        body = item.body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self.secret, body),
            "X-Postdesk-Event": item.event,
            "X-Postdesk-Delivery": str(item.id),
        }
        try:
            response = await client.post(item.url, content=body, headers=headers)
        except httpx.HTTPError as failure:
            return f"{type(failure).__name__}: {' '.join(str(failure).split())}".rstrip(": ")
        return None if response.is_success else f"HTTP {response.status_code}"

    def _claim(self) -> list[_Claimed]:
        now = utcnow()
        free = or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now)
        claimed: list[_Claimed] = []
        with transaction(self.factory) as session:
            due = session.scalars(
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                    free,
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(BATCH)
            ).all()
            for row_id in due:
                lease = (
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == row_id, WebhookDelivery.status == "pending", free)
                    .values(claimed_until=now + timedelta(seconds=LEASE_SECONDS))
                    .execution_options(synchronize_session=False)
                )
                if cast(CursorResult[Any], session.execute(lease)).rowcount != 1:
                    continue  # another daemon took it
                row = session.get_one(WebhookDelivery, row_id)
                claimed.append(_Claimed(row.id, row.url, row.event, row.body, row.attempts))
        return claimed

    def _record_all(
        self, results: list[tuple[_Claimed, str | None]]
    ) -> list[tuple[_Claimed, str | None, str]]:
        """Record every outcome of one round in one transaction; describe each."""
        with transaction(self.factory) as session:
            return [(item, error, self._record(session, item, error)) for item, error in results]

    def _record(self, session: Session, item: _Claimed, error: str | None) -> str:
        """Mark the row sent, or schedule the next attempt, or fail it; describe what was done."""
        attempts = item.attempts + 1
        row = session.get_one(WebhookDelivery, item.id)
        row.attempts, row.claimed_until = attempts, None
        if error is None:
            row.status, row.sent_at = "sent", utcnow()
            self.counts["sent"] += 1
            return "delivered"
        row.last_error = error[:2000]
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


def _hhmmss(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S")
