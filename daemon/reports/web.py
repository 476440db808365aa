"""``/reports`` on the operations listener: the HTML report of a date range, behind a token.

``GET /reports?from=YYYY-MM-DD&to=YYYY-MM-DD&by=day|week|month`` with the token as
``Authorization: Bearer <token>`` (or ``?token=`` for a browser's address bar). No token
configured (``http.reports_token`` / ``http.reports_token_env``) means the page does not exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import date
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from postdesk.daemon.config import Settings, secret_value
from postdesk.daemon.reports.periods import make_window, parse_date
from postdesk.models.schema import utcnow

Reply = tuple[int, str, bytes]
TEXT = "text/plain; charset=utf-8"


class ReportsPage:
    """The ``/reports`` route: checks the token and the range, then renders in a thread."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        """Resolve the token now, so an unset ``reports_token_env`` variable fails at start."""
        http = settings.http
        token = secret_value(http.reports_token, http.reports_token_env, "http.reports_token")
        self.settings = settings
        self.engine = engine
        self.token = token.encode()
        self.busy = asyncio.Lock()  # one report at a time: it is CPU-heavy on a big desk

    @property
    def enabled(self) -> bool:
        """True when a token is configured."""
        return bool(self.token)

    async def answer(self, query: str, authorization: str) -> Reply:
        """The reply to ``GET /reports?<query>`` carrying the ``Authorization`` header value."""
        if not self.enabled:
            return 404, TEXT, b"not found\n"
        params = parse_qs(query, keep_blank_values=True)
        given = authorization.removeprefix("Bearer ").strip() if authorization else ""
        given = given or _one(params, "token")
        if not hmac.compare_digest(_digest(given.encode()), _digest(self.token)):
            return 401, TEXT, b"a valid reports token is required\n"
        try:
            first, last, by = self._range(params)
        except ValueError as error:
            return 400, TEXT, f"bad request: {error}\n".encode()
        async with self.busy:
            page = await asyncio.to_thread(_render, self.settings, self.engine, first, last, by)
        return 200, "text/html; charset=utf-8", page.encode()

    def _range(self, params: dict[str, list[str]]) -> tuple[date | None, date | None, str]:
        """The dates and period of the query, checked as ``postdesk report`` checks them."""
        first = parse_date(_one(params, "from")) if _one(params, "from") else None
        last = parse_date(_one(params, "to")) if _one(params, "to") else None
        by = _one(params, "by") or "week"
        zone = ZoneInfo(self.settings.reports.timezone)
        try:
            make_window(first, last, by, zone, utcnow().astimezone(zone).date())
        except ValueError as error:
            raise ValueError(str(error).replace("--", "")) from None
        return first, last, by


def _render(
    settings: Settings, engine: Engine, first: date | None, last: date | None, by: str
) -> str:
    """The report page; the report builder (and numpy) is imported with the first request, in
    the rendering thread, not when ``serve`` starts."""
    from postdesk.daemon.reports.html import report_page

    return report_page(settings, engine, first, last, by)


def _digest(value: bytes) -> bytes:
    """Equal-length values to compare, so the comparison time tells nothing, not even length."""
    return hashlib.sha256(value).digest()


def _one(params: dict[str, list[str]], name: str) -> str:
    """The last value of ``name`` in the query, or ``""``."""
    values = params.get(name)
    return values[-1] if values else ""
