"""Webhook notifications: every ``postdesk_notify`` event POSTed as signed JSON to your URLs.

Configure under ``[plugins.notify_webhook]``. An event becomes one row per URL in the durable
queue (table ``webhook_deliveries``): under ``postdesk serve`` in the plugins process's own
transaction that takes the events from the event journal (:meth:`NotifyWebhook.take_journaled`),
else within FLUSH_SECONDS of the event, the events of many messages in one write (each write
competes with the worker's on SQLite); ``postdesk serve``
delivers the rows in the background (:mod:`.delivery`), retrying with exponential backoff, so
a receiver that is down loses nothing; sent rows are deleted after ``keep_sent_days``. Each POST carries ``X-Postdesk-Signature: sha256=<hex HMAC-SHA256 of the
body>`` keyed with the configured secret. ``format = "slack"`` sends Slack-compatible
``{"text": ...}`` bodies instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import Connection, Table, insert
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import ConfigError, secret_value
from postdesk.daemon.store.db import in_pages, transaction
from postdesk.models.schema import utcnow
from postdesk.models.webhooks import WebhookDelivery
from postdesk.plugins import hookimpl
from postdesk.plugins.host import PluginContext
from postdesk.plugins.journal import TakenCall
from postdesk.plugins.notify_webhook.body import render_body
from postdesk.plugins.notify_webhook.delivery import CLAIMED_COLUMNS, Claimed, Deliverer

log = logging.getLogger("postdesk.plugins.notify_webhook")

FLUSH_SECONDS = 1.0  # events wait at most this long to be written, together
_TABLE = cast(Table, WebhookDelivery.__table__)
_INSERT = insert(_TABLE).values(status="pending", attempts=0, last_error="")  # built once
_INSERT_LEASED = _INSERT.returning(*CLAIMED_COLUMNS)  # rows handed over leased (take_journaled)


@dataclass(frozen=True)
class WebhookSettings:
    """``[plugins.notify_webhook]``."""

    urls: tuple[str, ...] = ()
    secret: str = ""
    secret_env: str = ""  # environment variable holding the HMAC secret
    format: Literal["json", "slack"] = "json"
    events: tuple[str, ...] = ()  # empty: every event
    timeout_seconds: float = 10.0
    max_attempts: int = 12
    retry_base_seconds: float = 30.0
    keep_sent_days: float = 7.0  # sent rows are deleted after this; failed rows are kept


def webhook_settings(context: PluginContext) -> tuple[WebhookSettings, bytes]:
    """The checked settings and the signing key."""
    settings = context.options_as(WebhookSettings)
    key = "plugins.notify_webhook"
    if not settings.urls:
        raise ConfigError(f"{key}.urls: give at least one URL")
    for index, url in enumerate(settings.urls):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{key}.urls[{index}]: expected an http(s) URL, got {url!r}")
    secret = secret_value(settings.secret, settings.secret_env, f"{key}.secret")
    if not secret:
        raise ConfigError(f"{key}.secret: set secret or secret_env (receivers check signatures)")
    if settings.timeout_seconds <= 0 or settings.max_attempts <= 0:
        raise ConfigError(f"{key}: timeout_seconds and max_attempts must be greater than 0")
    if settings.keep_sent_days < 0:
        raise ConfigError(f"{key}.keep_sent_days: must not be negative")
    return settings, secret.encode()


class NotifyWebhook:
    """The plugin object: queues events, and delivers them while ``serve`` runs."""

    def __init__(
        self,
        settings: WebhookSettings,
        secret: bytes,
        factory: sessionmaker[Session],
        reader: sessionmaker[Session] | None = None,
    ) -> None:
        """Queue in, and deliver from, the database of ``factory`` (``reader``: see Deliverer)."""
        self.settings = settings
        self.factory = factory
        self.deliverer = Deliverer(settings, secret, factory, reader)
        self._pending: list[tuple[str, str, str]] = []  # (url, event, body) not yet written
        self._flushing: asyncio.Future[None] | None = None

    @property
    def notify_events(self) -> tuple[str, ...]:
        """The events this plugin sends (empty: every one): postdesk journals no other."""
        return self.settings.events

    @hookimpl
    async def postdesk_notify(
        self,
        event: str,
        ticket: Mapping[str, Any] | None,
        detail: Mapping[str, Any],
        event_id: str,
    ) -> None:
        """Queue the event, one row per URL, and return once the rows are written: within
        ``FLUSH_SECONDS``, the events of several messages in one transaction. Answering only
        then lets postdesk run the call again if the process dies before (R-17)."""
        if self.settings.events and event not in self.settings.events:
            return
        body = render_body(self.settings.format, event, ticket, detail, utcnow(), event_id)
        self._pending.extend((url, event, body) for url in self.settings.urls)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush_soon())
        await asyncio.shield(self._flushing)

    async def flush(self) -> None:
        """Wait until every event handed over so far is in the database."""
        while self._flushing is not None and not self._flushing.done():
            await self._flushing

    async def _flush_soon(self) -> None:
        """Write the events waiting; on failure (the database is down) they wait for the next
        write instead of being lost."""
        await asyncio.sleep(FLUSH_SECONDS)
        rows, self._pending = self._pending, []
        try:
            await asyncio.to_thread(self._write, rows)
        except Exception as error:
            log.warning(
                "webhook queue: %d events not written yet, will retry: %s", len(rows), error
            )
            self._pending[:0] = rows
            self._flushing = asyncio.ensure_future(self._flush_soon())

    def _write(self, rows: list[tuple[str, str, str]]) -> None:
        now = utcnow()
        values = [
            {"url": url, "event": event, "body": body, "next_attempt_at": now, "created_at": now}
            for url, event, body in rows
        ]
        with transaction(self.factory) as session:
            for page in in_pages(values):
                session.connection().execute(_INSERT, page)  # Core: no ORM layer between

    def take_journaled(
        self, connection: Connection, calls: list[TakenCall]
    ) -> Callable[[], None] | None:
        """Queue the journaled ``postdesk_notify`` calls (``EventJournal``, in the plugins
        process) with ``connection``, in the journal's own transaction: one row per URL,
        leased already to this process's deliveries when they run, which POST them in their
        next round without reading or claiming them again. Returns what hands the rows over
        once the transaction commits (None when nothing is handed)."""
        now = utcnow()
        values: list[dict[str, Any]] = []
        for event_id, _hook, arguments in calls:
            event = str(arguments.get("event", ""))
            if self.settings.events and event not in self.settings.events:
                continue
            ticket, detail = arguments.get("ticket"), arguments.get("detail") or {}
            body = render_body(self.settings.format, event, ticket, detail, now, event_id)
            values.extend(
                {"url": url, "event": event, "body": body, "next_attempt_at": now}
                | {"created_at": now, "claimed_until": None}
                for url in self.settings.urls
            )
        if not values:
            return None
        lease = self.deliverer.lease(now)
        if lease is None:  # no deliveries running here: the rows wait to be claimed
            for page in in_pages(values):
                connection.execute(_INSERT, page)
            return None
        for row in values:
            row["claimed_until"] = lease
        rows = [
            row for page in in_pages(values) for row in connection.execute(_INSERT_LEASED, page)
        ]
        return functools.partial(self.deliverer.hand_over, [Claimed(*row) for row in rows])

    async def serve(self, stop: asyncio.Event) -> None:
        """Deliver queued events until ``stop`` is set (run by ``postdesk serve``)."""
        await self.deliverer.run(stop)


def create_plugin(context: PluginContext) -> NotifyWebhook:
    """Build the webhook notifier from ``[plugins.notify_webhook]``."""
    settings, secret = webhook_settings(context)
    return NotifyWebhook(settings, secret, context.database(), context.reader())


__all__ = ["NotifyWebhook", "WebhookSettings", "create_plugin"]
