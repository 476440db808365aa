"""HTTP requests from the plugins' loop, made by a few threads that keep their connections alive.

The standard library's ``http.client`` in a small pool of threads costs a fraction of the CPU
an async client spends on a request (measured with bench/bench_plugins.py: about a tenth of
httpx's on loopback), and the threads bound how many requests a server gets at once. The order
lookup asks a shop through one, the webhook deliveries POST through another.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import SplitResult, urlsplit

STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class HttpPool:
    """``threads`` threads making requests, each with its own kept-alive connection per host."""

    def __init__(self, threads: int, timeout: float, name: str) -> None:
        """Every socket operation of a request waits at most ``timeout`` seconds."""
        self.timeout = timeout
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._local = threading.local()  # each thread's connections, by (scheme, host:port)
        self._opened: list[http.client.HTTPConnection] = []  # every connection, to close them
        self._opened_lock = threading.Lock()

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """(status, body) of ``method url``; raises ``OSError`` or ``HTTPException`` when the
        server cannot be reached or does not answer in time."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._threads, self._request, method, url, body, dict(headers or {})
        )

    def _request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """In a pool thread, over its connection to the host: a kept-alive connection the
        server has closed meanwhile is opened again once."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection = self._connection(parts)
        try:
            try:
                return _exchange(connection, method, target, body, headers)
            except STALE:
                connection.close()  # the next request opens it again
                return _exchange(connection, method, target, body, headers)
        except Exception:
            connection.close()  # in no state to be used again (a timeout mid-answer)
            raise

    def _connection(self, parts: SplitResult) -> http.client.HTTPConnection:
        """This thread's connection to the host of ``parts``, opened on first use."""
        kept: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "connections", {}
        )
        key = (parts.scheme, parts.netloc)
        connection = kept.get(key)
        if connection is None:
            host, port = parts.hostname or "", parts.port
            if parts.scheme == "https":
                context = ssl.create_default_context()
                connection = http.client.HTTPSConnection(
                    host, port, timeout=self.timeout, context=context
                )
            else:
                connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
            kept[key] = connection
            with self._opened_lock:
                self._opened.append(connection)
        return connection

    def close(self) -> None:
        """Close the connections and let the threads go."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        with self._opened_lock:
            for connection in self._opened:
                connection.close()
            self._opened.clear()


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    target: str,
    body: bytes | None,
    headers: dict[str, str],
) -> tuple[int, bytes]:
    connection.request(method, target, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


__all__ = ["HttpPool"]
