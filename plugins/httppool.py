"""HTTP/1.1 requests on the plugins' event loop, over a few connections kept alive.

The order lookup asks a shop through one pool, the webhook deliveries POST through another.
Requests run on the loop itself, with no thread per request: handing each request to a thread
and its answer back cost about twice the CPU of the request (measured against a loopback
server: about 280 µs a request through ``http.client`` in a thread pool, about 90 µs here).
At most ``connections`` requests of a pool run at once, each on a connection of its own,
which is kept for the next request unless the server closes it. Every step of a request
(connecting, sending, each read) waits at most the pool's timeout. Answers are read with a
``Content-Length``, chunked, or up to the end of the connection; nothing else of HTTP is
interpreted (no redirects, no compression: the request asks for ``identity``).
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("postdesk.plugins")

HEAD_LIMIT = 64 * 1024  # the longest status line and header block of an answer
_NO_BODY = (204, 304)


@dataclass
class _Link:
    """One open connection to a host."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        try:
            self.writer.close()
        except RuntimeError:  # its loop is closed (an asyncio.run that ended): close it here
            _close_socket(self.writer.transport)


@dataclass
class _Bound:
    """What a pool keeps on one event loop: its connections and the room for requests."""

    loop: asyncio.AbstractEventLoop
    room: asyncio.Semaphore
    idle: dict[tuple[str, str], list[_Link]] = field(default_factory=dict)


class HttpPool:
    """Requests at most ``connections`` at once, each connection kept alive per host."""

    def __init__(self, connections: int, timeout: float, name: str) -> None:
        """Every step of a request waits at most ``timeout`` seconds; ``name`` names the pool
        in log lines."""
        self.connections = connections
        self.timeout = timeout
        self.name = name
        self._bound: _Bound | None = None
        self._tls: ssl.SSLContext | None = None

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """(status, body) of ``method url``; raises ``OSError`` (a timeout too) or
        ``HTTPException`` when the server cannot be reached or does not answer in time."""
        bound = self._on_this_loop()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise http.client.InvalidURL(url)
        key = (parts.scheme, parts.netloc)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = _request_bytes(method, parts.netloc, target, body, headers or {})
        async with bound.room:
            link = self._idle_link(bound, key)
            if link is not None:
                try:
                    return await self._exchange(bound, key, link, method, request)
                except (ConnectionError, http.client.RemoteDisconnected):
                    pass  # a kept connection the server closed meanwhile: once more, anew
            link = await self._connect(parts.scheme, parts.hostname, parts.port)
            return await self._exchange(bound, key, link, method, request)

    def close(self) -> None:
        """Close the connections kept."""
        bound, self._bound = self._bound, None
        if bound is not None:
            for links in bound.idle.values():
                for link in links:
                    link.close()

    def _on_this_loop(self) -> _Bound:
        """The pool's state on the running loop (made anew when the loop changed: the
        connections of another loop cannot be used here)."""
        loop = asyncio.get_running_loop()
        if self._bound is None or self._bound.loop is not loop:
            self.close()
            self._bound = _Bound(loop, asyncio.Semaphore(self.connections))
        return self._bound

    @staticmethod
    def _idle_link(bound: _Bound, key: tuple[str, str]) -> _Link | None:
        links = bound.idle.get(key, [])
        while links:
            link = links.pop()
            if not link.reader.at_eof() and not link.writer.is_closing():
                return link
            link.close()
        return None

    async def _connect(self, scheme: str, host: str, port: int | None) -> _Link:
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        default = 443 if tls is not None else 80
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(
                host, port or default, ssl=tls, limit=HEAD_LIMIT
            )
        return _Link(reader, writer)

    async def _exchange(
        self, bound: _Bound, key: tuple[str, str], link: _Link, method: str, request: bytes
    ) -> tuple[int, bytes]:
        """Send ``request`` over ``link`` and read the answer; the link is kept for the next
        request when the answer allows it, else closed."""
        keep = False
        try:
            link.writer.write(request)
            async with asyncio.timeout(self.timeout):
                await link.writer.drain()
            status, fields, version = await self._head(link)
            while 100 <= status < 200:  # an interim answer: the real one follows
                status, fields, version = await self._head(link)
            answer, keep = await self._body(link, method, status, fields, version)
            return status, answer
        finally:
            if keep:
                bound.idle.setdefault(key, []).append(link)
            else:
                link.close()

    async def _head(self, link: _Link) -> tuple[int, dict[str, str], str]:
        """The status, header fields (lower-cased names) and HTTP version of an answer."""
        try:
            async with asyncio.timeout(self.timeout):
                raw = await link.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if not error.partial:
                raise http.client.RemoteDisconnected("closed without an answer") from None
            raise http.client.IncompleteRead(error.partial) from None
        except asyncio.LimitOverrunError:
            raise http.client.LineTooLong("header block") from None
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/") or not code.isdigit():
            raise http.client.BadStatusLine(lines[0])
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                fields[name.strip().lower()] = value.strip()
        return int(code), fields, version

    async def _body(
        self, link: _Link, method: str, status: int, fields: dict[str, str], version: str
    ) -> tuple[bytes, bool]:
        """The body of an answer, and whether its connection may carry another request."""
        keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        try:
            async with asyncio.timeout(self.timeout):
                if method == "HEAD" or status in _NO_BODY:
                    return b"", keep
                if "chunked" in fields.get("transfer-encoding", "").lower():
                    return await _chunks(link.reader), keep
                if "content-length" in fields:
                    return await link.reader.readexactly(int(fields["content-length"])), keep
                return await link.reader.read(), False  # up to the end of the connection
        except asyncio.IncompleteReadError as error:
            raise http.client.IncompleteRead(error.partial) from None
        except asyncio.LimitOverrunError:
            raise http.client.LineTooLong("chunk size") from None
        except ValueError as error:  # a length that is no number
            raise http.client.HTTPException(f"unreadable answer: {error}") from None


def _close_socket(transport: asyncio.BaseTransport) -> None:
    """Close the socket of ``transport``, whose loop is closed: the close it deferred to the
    loop never runs (asyncio offers nothing public for it, so its socket transport's own
    attribute is used; a transport without one is left to the garbage collector)."""
    inner: Any = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    inner = inner or transport
    sock = getattr(inner, "_sock", None)
    if sock is not None:
        sock.close()
        inner._sock = None


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    """A chunked body (its trailer fields are read and ignored)."""
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass
    return b"".join(parts)


def _request_bytes(
    method: str, netloc: str, target: str, body: bytes | None, headers: Mapping[str, str]
) -> bytes:
    """The request as sent: request line, header fields, body."""
    names = {name.lower() for name in headers}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {netloc.rpartition('@')[2]}")
    if "accept-encoding" not in names:
        lines.append("Accept-Encoding: identity")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


__all__ = ["HttpPool"]
