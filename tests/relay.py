"""A TCP relay on loopback in front of a real server, for injecting network faults.

``pause()`` cuts every connection and refuses new ones until ``resume()`` (a database that goes
away). ``cut_after(n)`` closes the connection carrying the server's n-th byte after arming, in
the middle of whatever the server was sending; ``stall_after(n)`` instead keeps that connection
open but forwards nothing more from the server (a hung server).
"""

from __future__ import annotations

import asyncio
import threading

from tests.support import free_port


class TcpRelay:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream_port``, with faults on demand."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.cuts = 0
        self._budget: int | None = None
        self._stall = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        """Start relaying."""
        self._thread.start()
        self.resume()

    def resume(self) -> None:
        """Accept connections (again)."""
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def pause(self) -> None:
        """Cut every open connection and refuse new ones."""
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)

    def stop(self) -> None:
        """Close everything and stop the relay's thread."""
        self.pause()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def cut_after(self, server_bytes: int) -> None:
        """Cut the connection that carries the next ``server_bytes``-th byte from the server."""
        self._budget, self._stall = server_bytes, False

    def stall_after(self, server_bytes: int) -> None:
        """Stop forwarding the server's bytes after the next ``server_bytes`` of them."""
        self._budget, self._stall = server_bytes, True

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer, None), self._pipe(up_reader, writer, up_writer)
        )
        self._writers.difference_update((writer, up_writer))

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter | None,
    ) -> None:
        """Copy bytes one way; on the server's side, apply an armed cut or stall."""
        try:
            while data := await reader.read(65536):
                if upstream is not None and self._budget is not None:
                    if len(data) >= self._budget:
                        await self._fault(reader, writer, upstream, data)
                        return
                    self._budget -= len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def _fault(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter,
        data: bytes,
    ) -> None:
        assert self._budget is not None
        writer.write(data[: self._budget])
        self._budget = None
        self.cuts += 1
        if self._stall:
            while await reader.read(65536):
                pass  # swallow the rest until the client gives up
        writer.transport.abort()
        upstream.transport.abort()
