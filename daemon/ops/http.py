"""The optional health and metrics listener (``[http] listen``) inside ``serve``.

A deliberately small HTTP/1.1 server on asyncio streams: three GET routes (and ``/reports``
when serve hands one in), one request per connection, bounded request size and time. It runs in serve's event loop, so ``/healthz``
answering proves the loop answers; blocking work (the database, the file system) runs in
threads. A web framework would add a dependency for three fixed routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import Settings, split_host_port
from postdesk.daemon.intake.spool import Spool
from postdesk.daemon.ops.facts import spool_facts, spool_writable
from postdesk.daemon.ops.metrics import LiveSources, PostdeskCollector, exposition, registry_for
from postdesk.daemon.store.db import ping

log = logging.getLogger("postdesk.http")

REQUEST_TIMEOUT_SECONDS = 5.0
CHECK_TIMEOUT_SECONDS = 5.0
REPORT_TIMEOUT_SECONDS = 300.0
MAX_REQUEST_BYTES = 8192
Reply = tuple[int, str, bytes]
HTML_HEADERS = (
    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
    "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
)


class PageRoute(Protocol):
    """A slow, token-protected page (``/reports``); the ops package does not build it."""

    async def answer(self, query: str, authorization: str) -> Reply:
        """The reply to a GET with this query string and ``Authorization`` header value."""
        ...


class OpsEndpoints:
    """The three routes and what each one checks."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        spool: Spool,
        live: LiveSources,
        reports: PageRoute | None = None,
    ) -> None:
        self.settings = settings
        self.reports = reports
        self.factory = factory
        self.spool = spool
        self.live = live
        self.registry = registry_for(PostdeskCollector(settings, factory, spool, live))
        self.routes: dict[str, Callable[[], Awaitable[Reply]]] = {
            "/healthz": self.healthz,
            "/readyz": self.readyz,
            "/metrics": self.metrics,
        }

    async def healthz(self) -> Reply:
        """The event loop answers."""
        return 200, "text/plain; charset=utf-8", b"ok\n"

    async def readyz(self) -> Reply:
        """Ready when the database answers, the spool takes files, the worker runs and the disk
        has room; otherwise 503 listing what is wrong."""
        problems = await asyncio.to_thread(self._problems)
        if not await self._database_answers():
            problems.insert(0, "database does not answer")
        if not self.live.worker_alive():
            problems.append("worker process is not running")
        if problems:
            return (
                503,
                "text/plain; charset=utf-8",
                ("not ready: " + "; ".join(problems) + "\n").encode(),
            )
        return 200, "text/plain; charset=utf-8", b"ready\n"

    async def metrics(self) -> Reply:
        """The Prometheus exposition."""
        body = await asyncio.to_thread(exposition, self.registry)
        return 200, CONTENT_TYPE_LATEST, body

    def _problems(self) -> list[str]:
        problems = []
        if not spool_writable(self.spool):
            problems.append(f"spool {self.spool.tmp} is not writable")
        facts = spool_facts(self.settings, self.spool)
        if not facts.disk_ok:
            problems.append(f"disk almost full ({facts.free_bytes} bytes free)")
        return problems

    async def _database_answers(self) -> bool:
        engine = self.factory.kw["bind"]
        try:
            await asyncio.wait_for(asyncio.to_thread(ping, engine), CHECK_TIMEOUT_SECONDS)
        except Exception as error:
            log.warning(
                "readyz: database: %s", " ".join(str(error).split())[:200] or type(error).__name__
            )
            return False
        return True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one request and close the connection."""
        try:
            answer = await asyncio.wait_for(self._answer(reader), REQUEST_TIMEOUT_SECONDS * 3)
            if not isinstance(answer, tuple):  # a page that may take long: its own bound
                answer = await asyncio.wait_for(answer, REPORT_TIMEOUT_SECONDS)
            status, content_type, body = answer
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            writer.close()
            return
        except Exception as error:  # never let a scrape take the daemon down
            log.error("http: %r", error, exc_info=error)
            status, content_type, body = 500, "text/plain; charset=utf-8", b"internal error\n"
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"{_extra_headers(status, content_type)}Connection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode("ascii") + body)
            await writer.drain()
        writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> Reply | Awaitable[Reply]:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_SECONDS)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, _, rest = request_line.partition(" ")
        path, _, query = rest.partition(" ")[0].partition("?")
        if path == "/reports" and self.reports is not None:
            if method != "GET":
                return 405, "text/plain; charset=utf-8", b"only GET\n"
            return self.reports.answer(query, _header(header_lines, "authorization"))
        route = self.routes.get(path)
        if route is None:
            return 404, "text/plain; charset=utf-8", b"not found: /healthz, /readyz, /metrics\n"
        if method != "GET":
            return 405, "text/plain; charset=utf-8", b"only GET\n"
        return await route()


def _header(lines: list[str], name: str) -> str:
    """The value of header ``name`` (lower case) among the request's header lines, or ``""``."""
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return ""


def _extra_headers(status: int, content_type: str) -> str:
    """What a 401 or an HTML page adds to the response head."""
    if status == 401:
        return 'WWW-Authenticate: Bearer realm="postdesk reports"\r\n'
    return HTML_HEADERS if content_type.startswith("text/html") else ""


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


async def start_http(endpoints: OpsEndpoints, listen: str) -> asyncio.Server:
    """Listen on ``listen`` (HOST:PORT) for the operations endpoints."""
    host, port = split_host_port(listen, "http.listen")
    server = await asyncio.start_server(endpoints.handle, host, port, limit=MAX_REQUEST_BYTES)
    log.info("health and metrics on http://%s/ (healthz, readyz, metrics)", listen)
    return server


async def start_ops_http(
    settings: Settings,
    factory: sessionmaker[Session],
    spool: Spool,
    live: LiveSources,
    reports: PageRoute | None = None,
) -> asyncio.Server | None:
    """Start the listener when ``http.listen`` is set; None when it is off."""
    if not settings.http.listen:
        return None
    endpoints = OpsEndpoints(settings, factory, spool, live, reports)
    return await start_http(endpoints, settings.http.listen)
