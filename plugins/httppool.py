"""HTTP/1.1 requests on the plugins' event loop, over a few kept-alive connections per host.

The order lookup asks a shop through one pool, the webhook deliveries POST through another.
A request is written as one block and its answer read with asyncio streams on the loop that
asks: no thread hand-over per request and no ``email`` parser for the answer's header (the
standard library's ``http.client`` in a pool of threads cost several times the CPU per
request, measured with bench/bench_plugins.py). The client speaks the part of HTTP/1.1 a JSON
API or a webhook receiver needs: ``Content-Length``, chunked or read-to-close bodies, kept-
alive connections (one kept connection that the server closed meanwhile is opened again
once), ``https`` with the default certificate checks. At most ``limit`` requests of a pool
are under way at once; each may take ``timeout`` seconds once it has its turn.
"""

from __future__ import annotations

import asyncio
import http.client
import re
import ssl
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit

HEAD_LIMIT = 64 * 1024  # the longest answer header read
BODY_LIMIT = 16 * 1024 * 1024  # the longest answer body read (a JSON API's or a receiver's)
NO_BODY = frozenset({204, 304})
# What may not appear in a request line or a header field: it would end the line early and let
# a value (a token from the environment, a URL template) add lines of its own (http.client's
# rule too). A request target may not hold spaces either.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f]")


class _Link:
    """One open connection to a host, bound to the loop that opened it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.loop = asyncio.get_running_loop()

    def usable(self) -> bool:
        """True when it may carry another request (open, on this loop, no EOF seen)."""
        return (
            self.loop is asyncio.get_running_loop()
            and not self.writer.is_closing()
            and not self.reader.at_eof()
        )

    def close(self) -> None:
        """Close the connection (from any state)."""
        if not self.writer.is_closing():
            self.writer.close()


class HttpPool:
    """Requests with at most ``limit`` under way at once, each over a kept-alive connection."""

    def __init__(self, limit: int, timeout: float) -> None:
        """Every request may take ``timeout`` seconds once under way."""
        self.limit = limit
        self.timeout = timeout
        self._idle: dict[tuple[str, str], list[_Link]] = {}  # (scheme, host:port) -> links
        self._busy: set[_Link] = set()
        self._room: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._ssl: ssl.SSLContext | None = None

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """(status, body) of ``method url``; raises ``OSError`` (``TimeoutError`` included) or
        ``http.client.HTTPException`` when the server cannot be reached or does not answer in
        time, or answers what is not HTTP."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise http.client.InvalidURL(f"not an http(s) URL: {url!r}")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if _UNSAFE_TARGET.search(target) or _UNSAFE_TARGET.search(method + parts.netloc):
            raise http.client.InvalidURL(f"control character or space in the request: {url!r}")
        fields = {"Host": parts.netloc, **(headers or {})}
        if any(_UNSAFE.search(name + value) or ":" in name for name, value in fields.items()):
            raise ValueError(f"control character in a header field of the request to {url!r}")
        lines = [f"{method} {target} HTTP/1.1", *(f"{n}: {v}" for n, v in fields.items())]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        async with self._turn():
            async with asyncio.timeout(self.timeout):
                return await self._exchange(parts, method, data)

    def _turn(self) -> asyncio.Semaphore:
        """The semaphore of the running loop (a pool may be used from one loop, then another)."""
        loop = asyncio.get_running_loop()
        if self._room is None or self._room[0] is not loop:
            self._room = (loop, asyncio.Semaphore(self.limit))
        return self._room[1]

    async def _exchange(self, parts: SplitResult, method: str, data: bytes) -> tuple[int, bytes]:
        """Send ``data`` over a kept connection to the host of ``parts`` (again over a new one
        when the server had closed it) or a new one; the answer."""
        key = (parts.scheme, parts.netloc)
        idle = self._idle.setdefault(key, [])
        while idle:
            link = idle.pop()
            if not link.usable():
                link.close()
                continue
            try:
                return await self._over(link, key, method, data)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                break  # closed by the server while kept: once more on a new connection
        link = await self._open(parts)
        return await self._over(link, key, method, data)

    async def _open(self, parts: SplitResult) -> _Link:
        """A new connection to the host of ``parts``."""
        host, port = parts.hostname, parts.port
        if parts.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            reader, writer = await asyncio.open_connection(
                host, port or 443, ssl=self._ssl, limit=HEAD_LIMIT
            )
        else:
            reader, writer = await asyncio.open_connection(host, port or 80, limit=HEAD_LIMIT)
        return _Link(reader, writer)

    async def _over(
        self, link: _Link, key: tuple[str, str], method: str, data: bytes
    ) -> tuple[int, bytes]:
        """One exchange over ``link``; the link is kept for the next request when the answer
        allows it, else closed (also on any failure: it is in no state to be used again)."""
        self._busy.add(link)
        keep = False
        try:
            link.writer.write(data)
            status, answer, keep = await _answer(link.reader, method)
            return status, answer
        except asyncio.IncompleteReadError as error:
            raise http.client.RemoteDisconnected(
                "the server closed the connection before answering"
                if not error.partial
                else "the answer ended early"
            ) from None
        except (asyncio.LimitOverrunError, ValueError) as error:
            raise http.client.HTTPException(f"not an HTTP answer: {error}") from None
        finally:
            self._busy.discard(link)
            if keep and self._room is not None:
                self._idle.setdefault(key, []).append(link)
            else:
                link.close()

    def close(self) -> None:
        """Close every connection (those under way end their request with an error)."""
        for links in self._idle.values():
            for link in links:
                link.close()
        self._idle.clear()
        for link in list(self._busy):
            link.close()
        self._room = None  # a request finishing now does not keep its link


async def _answer(reader: asyncio.StreamReader, method: str) -> tuple[int, bytes, bool]:
    """Read one answer: (status, body, whether the connection may be kept)."""
    while True:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        version, _, rest = head[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise http.client.BadStatusLine(head[0][:100])
        status = int(rest[:3])
        if status >= 200 or status == 101:
            break  # else an interim answer (100 Continue): the real one follows
    length: int | None = None
    chunked, keep = False, version == "HTTP/1.1"  # unless the answer says otherwise
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "connection":
            keep = "keep-alive" in value.lower() or (keep and "close" not in value.lower())
    if method == "HEAD" or status in NO_BODY or status < 200:
        return status, b"", keep
    if chunked:
        return status, await _chunks(reader), keep
    if length is not None:
        if length > BODY_LIMIT:
            raise http.client.HTTPException(f"answer of {length} bytes, over {BODY_LIMIT}")
        return status, await reader.readexactly(length), keep
    return status, await _until_closed(reader), False  # to the end: the server closes


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """A body that ends when the server closes the connection, up to ``BODY_LIMIT`` bytes."""
    body = await reader.read(BODY_LIMIT + 1)
    while len(body) <= BODY_LIMIT and not reader.at_eof():
        body += await reader.read(BODY_LIMIT + 1 - len(body))
    if len(body) > BODY_LIMIT:
        raise http.client.HTTPException(f"answer over {BODY_LIMIT} bytes")
    return body


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    """A chunked body (trailer fields are read and ignored)."""
    parts = []
    total = 0
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16):
        total += size
        if total > BODY_LIMIT:
            raise http.client.HTTPException(f"chunked answer over {BODY_LIMIT} bytes")
        parts.append((await reader.readexactly(size + 2))[:-2])
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass
    return b"".join(parts)


__all__ = ["HttpPool"]
