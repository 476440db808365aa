"""A TCP relay on loopback whose upstream can be cut and restored: a database that goes away."""

from __future__ import annotations

import asyncio
import threading

from tests.support import free_port


class TcpProxy:
    """Forwards 127.0.0.1:port to ``upstream``; ``pause`` cuts and refuses, ``resume`` restores."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        """Start forwarding."""
        self.thread.start()
        self.resume()

    def resume(self) -> None:
        """Accept connections again."""
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)

    def pause(self) -> None:
        """Close the listener and cut every open connection."""
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)

    def stop(self) -> None:
        """Cut everything and stop the thread."""
        self.pause()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self.writers.update((writer, up_writer))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()
