"""Order lookup: order numbers found in a message, and the sender's orders, from a shop's JSON API.

Configure under ``[plugins.orders_http]`` (every key in docs/postdesk.example.toml). The
order numbers are the first group of ``pattern`` (or the whole match) in the subject and new
text (:mod:`postdesk.plugins.order_numbers`); each is fetched from ``by_number_url``, and the sender's orders from ``by_email_url``.
Answers are mapped to postdesk's field names with ``fields`` (dotted paths into the shop's
JSON) and cached for ``cache_seconds``. Every request has ``timeout_seconds``; a shop that
fails or hangs costs at most that and the notification goes out without orders.

Requests go through a :class:`~postdesk.plugins.httppool.HttpPool` on the plugins' loop, at
most ``max_requests`` at once, over connections to the shop kept alive.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from postdesk.daemon.config import ConfigError
from postdesk.plugins import hookimpl
from postdesk.plugins.host import PluginContext
from postdesk.plugins.httppool import HttpPool
from postdesk.plugins.order_numbers import DEFAULT_PATTERN, NumberFinder

log = logging.getLogger("postdesk.plugins.orders_http")

DEFAULT_FIELDS = {"number": "number", "status": "status", "total": "total", "url": "url"}


@dataclass(frozen=True)
class OrdersSettings:
    """``[plugins.orders_http]``."""

    pattern: str = DEFAULT_PATTERN
    by_number_url: str = ""  # e.g. https://shop.example/api/orders/{number}
    by_email_url: str = ""  # e.g. https://shop.example/api/orders?email={email}
    list_field: str = ""  # where the list is in a by-email answer; "" = the answer is a list
    fields: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FIELDS))
    token_env: str = ""  # environment variable holding a bearer token
    timeout_seconds: float = 2.0
    cache_seconds: float = 300.0
    max_orders: int = 5
    # Requests to the shop at once (two a lookup), each over its own kept-alive connection:
    # answering R messages a second from a shop that takes L seconds needs 2 * R * L of them.
    max_requests: int = 64


def orders_settings(context: PluginContext) -> tuple[OrdersSettings, re.Pattern[str], str]:
    """The checked settings, the compiled pattern and the token."""
    settings = context.options_as(OrdersSettings)
    key = "plugins.orders_http"
    try:
        pattern = re.compile(settings.pattern)
    except re.error as error:
        raise ConfigError(f"{key}.pattern: not a regular expression: {error}") from None
    if pattern.groups > 1:
        raise ConfigError(f"{key}.pattern: use at most one group (the order number)")
    for name, slot in (("by_number_url", "{number}"), ("by_email_url", "{email}")):
        url = getattr(settings, name)
        if url and (slot not in url or not url.startswith(("http://", "https://"))):
            raise ConfigError(f"{key}.{name}: expected an http(s) URL containing {slot}")
    if not settings.by_number_url and not settings.by_email_url:
        raise ConfigError(f"{key}: set by_number_url, by_email_url or both")
    if "number" not in settings.fields:
        raise ConfigError(f"{key}.fields: must map 'number'")
    if min(settings.timeout_seconds, settings.max_orders, settings.max_requests) <= 0:
        raise ConfigError(
            f"{key}: timeout_seconds, max_orders and max_requests must be greater than 0"
        )
    token = ""
    if settings.token_env:
        token = os.environ.get(settings.token_env, "")
        if not token:
            raise ConfigError(
                f"{key}.token_env: environment variable {settings.token_env} is not set"
            )
        if not token.isprintable() or not token.isascii():
            raise ConfigError(
                f"{key}.token_env: {settings.token_env} holds a control or non-ASCII character"
            )
    return settings, pattern, token


class OrdersHttp:
    """The plugin object: answers ``postdesk_lookup_orders`` from the shop's API."""

    def __init__(self, settings: OrdersSettings, pattern: re.Pattern[str], token: str) -> None:
        """Ask the shop described by ``settings``."""
        self.settings = settings
        self.pattern = pattern
        self._numbers = NumberFinder(pattern)
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._http = HttpPool(settings.max_requests, settings.timeout_seconds)
        self._inflight: dict[str, asyncio.Future[list[dict[str, Any]]]] = {}

    def numbers(self, text: str) -> list[str]:
        """Distinct order numbers in ``text``, in order of appearance, at most ``max_orders``."""
        return self._numbers.find(text, self.settings.max_orders)

    @hookimpl
    async def postdesk_lookup_orders(self, email: str, text: str) -> list[dict[str, Any]] | None:
        """The orders ``text`` mentions, then the sender's own; None when there are none."""
        urls = []
        if self.settings.by_number_url:
            for number in self.numbers(text):
                urls.append(
                    (self.settings.by_number_url.format(number=quote(number, safe="")), False)
                )
        if self.settings.by_email_url and email:
            urls.append((self.settings.by_email_url.format(email=quote(email, safe="@")), True))
        answers = [self._get(url, many) for url, many in urls]
        waiting = [answer for answer in answers if isinstance(answer, asyncio.Future)]
        if waiting:  # unlike gather, wait never cancels these shared requests
            await asyncio.wait(waiting)
        orders: list[dict[str, Any]] = []
        for answer in answers:
            for order in answer.result() if isinstance(answer, asyncio.Future) else answer:
                if all(order["number"] != o["number"] for o in orders):
                    orders.append(order)
        return orders[: self.settings.max_orders] or None

    def _get(
        self, url: str, many: bool
    ) -> list[dict[str, Any]] | asyncio.Future[list[dict[str, Any]]]:
        """The orders at ``url`` if cached, else the request for them (shared with a request
        in flight for the same URL)."""
        cached = self._cache.get(url)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        running = self._inflight.get(url)
        if running is None:
            running = asyncio.ensure_future(self._get_fresh(url, many))
            self._inflight[url] = running
            running.add_done_callback(lambda _done: self._inflight.pop(url, None))
        return running

    async def _get_fresh(self, url: str, many: bool) -> list[dict[str, Any]]:
        try:
            orders = self._orders(*await self._http.request("GET", url, headers=self.headers), many)
        except (OSError, http.client.HTTPException, ValueError) as error:  # not cached: retried
            log.warning(
                "shop lookup %s failed: %s",
                url,
                " ".join(str(error).split()) or type(error).__name__,
            )
            return []
        self._cache[url] = (time.monotonic() + self.settings.cache_seconds, orders)
        if len(self._cache) > 4096:
            self._cache.pop(next(iter(self._cache)))
        return orders

    def _orders(self, status: int, body: bytes, many: bool) -> list[dict[str, Any]]:
        """The orders in the shop's answer to a request by number or (``many``) by email."""
        if status == 404:
            return []
        if status >= 400:
            raise ValueError(f"HTTP {status}")
        data = json.loads(body)
        if many:
            data = _path(data, self.settings.list_field) if self.settings.list_field else data
            items = data if isinstance(data, list) else []
        else:
            items = [data] if isinstance(data, dict) else []
        return [o for o in (self._mapped(i) for i in items if isinstance(i, dict)) if o]

    async def aclose(self) -> None:
        """Close the connections to the shop and let the request threads go."""
        self._http.close()

    def _mapped(self, item: dict[str, Any]) -> dict[str, Any] | None:
        order = {}
        for ours, theirs in self.settings.fields.items():
            value = _path(item, theirs)
            if value is not None and not isinstance(value, dict | list):
                order[ours] = value
        return order if order.get("number") not in (None, "") else None


def _path(data: Any, dotted: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"``; None where the path does not lead."""
    for part in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def create_plugin(context: PluginContext) -> OrdersHttp:
    """Build the order lookup from ``[plugins.orders_http]``."""
    return OrdersHttp(*orders_settings(context))
