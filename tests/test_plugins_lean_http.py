"""The plugins' HTTP pool against real loopback servers: answer framings, kept and lost connections."""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import Awaitable, Callable

import pytest

from postdesk.plugins.httppool import HttpPool
from tests.httpstub import Shop

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serving(answer: Answer) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def test_chunked_and_close_delimited_answers_are_read_whole() -> None:
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        if len(requests) == 1:
            writer.write(
                b"HTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
            )
            requests.append(await reader.readuntil(b"\r\n\r\n"))  # the same connection, again
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
        writer.close()

    async def scenario() -> list[tuple[int, bytes]]:
        server, url = await _serving(answer)
        pool = HttpPool(2, 5.0, "test")
        try:
            first = await pool.request("GET", f"{url}/a?b=c", headers={"Accept": "x/y"})
            second = await pool.request("GET", f"{url}/again")
            return [first, second]
        finally:
            pool.close()
            server.close()

    assert asyncio.run(scenario()) == [(200, b"hello world"), (200, b"until the end")]
    assert requests[0].startswith(b"GET /a?b=c HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nAccept: x/y\r\n" in requests[0]
    assert requests[1].startswith(b"GET /again HTTP/1.1\r\n"), "the chunked answer's link kept"


def test_a_kept_connection_the_server_closed_is_replaced_once() -> None:
    with Shop() as shop:  # an HTTP/1.0 server: it closes each connection after answering

        async def scenario() -> list[int]:
            pool = HttpPool(1, 5.0, "test")
            try:
                return [
                    (await pool.request("GET", f"{shop.url}/orders/{number}"))[0]
                    for number in ("10001", "10002", "99999")
                ]
            finally:
                pool.close()

        assert asyncio.run(scenario()) == [200, 200, 404]
    assert len(shop.requests) == 3


def test_a_post_carries_its_body_and_a_silent_server_times_out_as_an_oserror() -> None:
    bodies: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                bodies.append(await reader.readexactly(length))
                if bodies[-1] == b"hang":
                    await asyncio.sleep(30)
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def scenario() -> tuple[int, bytes]:
        server, url = await _serving(answer)
        pool = HttpPool(2, 0.2, "test")
        try:
            sent = await pool.request("POST", f"{url}/hook", b'{"a": 1}', {"X-Sig": "s"})
            with pytest.raises(OSError):
                await pool.request("POST", f"{url}/hook", b"hang")
            return sent
        finally:
            pool.close()
            server.close()

    assert asyncio.run(scenario()) == (204, b"")
    assert bodies == [b'{"a": 1}', b"hang"]


def test_an_answer_that_is_not_http_is_an_http_exception() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        writer.close()

    async def scenario() -> None:
        server, url = await _serving(answer)
        pool = HttpPool(1, 5.0, "test")
        try:
            with pytest.raises(http.client.HTTPException):
                await pool.request("GET", url)
        finally:
            pool.close()
            server.close()

    asyncio.run(scenario())
