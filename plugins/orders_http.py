"""Order lookup: order numbers found in a message, and the sender's orders, from a shop's JSON API.

Configure under ``[plugins.orders_http]`` (every key in docs/postdesk.example.toml). The
order numbers are the first group of ``pattern`` (or the whole match) in the subject and new
text; each is fetched from ``by_number_url``, and the sender's orders from ``by_email_url``.
Answers are mapped to postdesk's field names with ``fields`` (dotted paths into the shop's
JSON) and cached for ``cache_seconds``. Every request has ``timeout_seconds``; a shop that
fails or hangs costs at most that and the notification goes out without orders.

Requests go through a :class:`~postdesk.plugins.httppool.HttpPool` on the plugins' loop, at
most SHOP_REQUESTS at once, over connections to the shop kept alive.
"""

# The order words are words of many scripts; letters that look Latin are meant as they are.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import compress
from typing import Any
from urllib.parse import quote

from postdesk.daemon.config import ConfigError
from postdesk.plugins import hookimpl
from postdesk.plugins.host import PluginContext
from postdesk.plugins.httppool import HttpPool

log = logging.getLogger("postdesk.plugins.orders_http")

# The words for an order (English, German, French, Spanish, Italian, Portuguese, Dutch,
# Swedish, Polish, Czech, Turkish, Russian, Ukrainian) in the forms a number follows, each
# at a word's start ("reorder", "border" are other words), then a number's marker ("no.",
# "Nr.", "n°", "№", "#", "ID", "number", "numéro", "номер", ...), spaced or glued on
# ("Bestellnummer", "Bestell-Nr."), then the number: a whole run of three to 83 letters,
# digits or hyphens, one a digit. A longer run is no order number, and the bound keeps a
# failing try short: unbounded, it went back through the whole run from every word before
# it (18 kB of "order-order-...-1" took 1.5 s of the plugins' loop; now 11 ms). Words said
# before them ("numéro de commande", "номер заказа") need no spelling: the order word is the
# one the number follows. The look-ahead at the words' first letters spares trying every
# word at the start of every other word: a third of the time in non-ASCII text (where this
# pattern itself is searched, at every position). Each part is a literal, a choice of
# literals, a possessive \s run (see _DEFAULT_LOWERED) or a bounded run, so a failed try
# never backtracks far.
DEFAULT_PATTERN = (
    r"(?i)\b(?=[abceopszз])(?:order|ordine|orden|pedido|encomenda|commande"
    r"|bestel(?:lung|ling|l)?|auftrags?|beställning(?:en|s)?|zamówieni[eau]"
    r"|objednáv(?:ka|ky|ku|ce)|sipariş(?:iniz|im)?|заказ[аеу]?|замовлен(?:ня|ні))"
    r"\s*+(?:-?(?:number|nummer|numéro|número|numero|numer|numarası|numaranız|номер"
    r"|číslo|no\.?|nr\.?|n\.?[°º]|n\.|č\.|№|id|#))?"
    r"\s*+:?\s*+#?\s*+([A-Z0-9-]{0,40}\d[A-Z0-9-]{2,40}+)(?![A-Z0-9-])"
)
# DEFAULT_PATTERN spelt for lower-cased ASCII text: one pattern per literal that its order
# words in ASCII letters start with ("ord" for order, ordine and orden). The other words hold
# a letter ASCII text lacks; one spelt without it ("zamowienie") is not looked for, as each
# word looked for costs a scan of every ASCII text with a digit. The marker "numarası" does
# match "numarasi" (a case-insensitive ı matches i and I). A pattern that starts with a
# literal is searched by a fast scan for it instead of a try at every position (as the
# default is: it ignores case, starts with \b and with a choice of words; the look-behind is
# that \b). No two of them match at one place (their literals differ), so in ASCII text the
# matches of DEFAULT_PATTERN are theirs in text.lower(), at the same places, taken in turn
# (_default_matches). Their \s runs are possessive (``*+``, Python 3.11): nothing after one
# matches a space, so giving spaces back never makes a match (a later run would take them,
# the rest unmoved), and a failing "order has ..." costs no backtracking through the four
# runs. They stay Unicode patterns: their \s, like the default's, also matches the
# separators \x1c-\x1f. A property test holds them to DEFAULT_PATTERN.
_LOWERED_TAIL = (
    r"\s*+(?:-?(?:number|nummer|numero|numer|numarasi|numaraniz|no\.?|nr\.?|n\.|id|#))?"
    r"\s*+:?\s*+#?\s*+([a-z0-9-]{0,40}\d[a-z0-9-]{2,40}+)(?![a-z0-9-])"
)
_DEFAULT_LOWERED = {
    word: re.compile(f"{word}(?<![a-z0-9_]{word}){ending}{_LOWERED_TAIL}")
    for word, ending in (
        ("ord", "(?:er|ine|en)"),
        ("pedido", ""),
        ("encomenda", ""),
        ("commande", ""),
        ("bestel", "(?:lung|ling|l)?"),
        ("auftrag", "s?"),
    )
}
# A number holds a digit: a text without one mentions no order number. Looked for first, by
# a scan far cheaper than the words' (most messages hold no digit).
_DIGIT = re.compile(r"\d")
_ASCII_DIGITS = b"0123456789"
# Of a message's subject and new text, the part searched for order numbers: the numbers a
# customer asks about come early, and a pattern of one's own may cost more per character.
SCANNED_CHARS = 64 * 1024
# The ASCII characters a Unicode \s matches and an ASCII-only one does not.
_UNICODE_ONLY_SPACES = ("\x1c", "\x1d", "\x1e", "\x1f")
DEFAULT_FIELDS = {"number": "number", "status": "status", "total": "total", "url": "url"}
# Requests to the shop at once (two a lookup), each over its own kept-alive connection.
SHOP_REQUESTS = 32


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
    if settings.timeout_seconds <= 0 or settings.max_orders <= 0:
        raise ConfigError(f"{key}: timeout_seconds and max_orders must be greater than 0")
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
        self._ascii = _ascii_twin(pattern)
        self._default = pattern.pattern == DEFAULT_PATTERN
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._http = HttpPool(SHOP_REQUESTS, settings.timeout_seconds)
        self._inflight: dict[str, asyncio.Future[list[dict[str, Any]]]] = {}

    def numbers(self, text: str) -> list[str]:
        """Distinct order numbers in ``text``, in order of appearance, at most ``max_orders``."""
        found: list[str] = []
        group = 1 if self.pattern.groups else 0
        text = text[:SCANNED_CHARS]
        if self._default:
            matches = _default_matches(text, self.pattern)
        elif self._ascii is not None and text.isascii() and not _has_unicode_only_spaces(text):
            matches = self._ascii.finditer(text)
        else:
            matches = self.pattern.finditer(text)
        for match in matches:
            number = text[match.start(group) : match.end(group)]
            if number and number not in found:
                found.append(number)
                if len(found) == self.settings.max_orders:
                    break
        return found

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


def _default_matches(text: str, default: re.Pattern[str]) -> Iterator[re.Match[str]]:
    """DEFAULT_PATTERN's (``default``'s) matches in ``text``; none without a digit. In ASCII
    text those of the lower-cased twins (:data:`_DEFAULT_LOWERED`) of the words it holds:
    each twin's next match, the first of them taken and those it overlaps searched again
    after it, as a search with the one pattern goes on."""
    if not text.isascii():
        if _DIGIT.search(text):
            yield from default.finditer(text)
        return
    if len(text.encode().translate(None, _ASCII_DIGITS)) == len(text):  # \d, in ASCII
        return
    # Only in ASCII does lower() keep each character in its place ("İ".lower() is two) and
    # match as ignoring case does (which also takes "ſ" for s).
    lowered = text.lower()
    words = list(compress(_DEFAULT_LOWERED.values(), map(lowered.__contains__, _DEFAULT_LOWERED)))
    if len(words) == 1:  # as most messages: one language, one word for an order
        yield from words[0].finditer(lowered)
        return
    matches = [match for match in (pattern.search(lowered) for pattern in words) if match]
    while matches:
        first = min(matches, key=lambda match: match.start())
        yield first
        end = first.end()
        nexts = [m if m.start() >= end else m.re.search(lowered, end) for m in matches]
        matches = [match for match in nexts if match]


def _ascii_twin(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """``pattern`` compiled for ASCII text alone, when it is ASCII itself: on ASCII text
    without the separators ``\\x1c``-``\\x1f`` (which only a Unicode ``\\s`` matches) it finds
    exactly what ``pattern`` finds, in about half the time when it ignores case (as the default
    does). None when it cannot be (a non-ASCII pattern, an explicit ``(?u)``)."""
    if not pattern.pattern.isascii():
        return None
    try:
        return re.compile(pattern.pattern, (pattern.flags & ~re.UNICODE) | re.ASCII)
    except (re.error, ValueError):
        return None


def _has_unicode_only_spaces(text: str) -> bool:
    """Whether ``text`` holds a character that ``\\s`` matches only in a Unicode pattern, where
    an ASCII twin (:func:`_ascii_twin`) would find something else."""
    return any(space in text for space in _UNICODE_ONLY_SPACES)


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
