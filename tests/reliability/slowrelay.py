"""A TCP relay that delays every chunk the client sends (R-35: a throttled database)."""

from __future__ import annotations

import asyncio

from tests.relay import TcpRelay


class SlowRelay(TcpRelay):
    """Like :class:`TcpRelay`, but each chunk from the client waits ``delay`` seconds first:
    with PostgreSQL behind it, about ``delay`` per statement."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        super().__init__(upstream_port)
        self.delay = delay

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter | None,
    ) -> None:
        if upstream is not None:  # the server's side: as fast as it is
            await super()._pipe(reader, writer, upstream)
            return
        try:
            while data := await reader.read(65536):
                await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
