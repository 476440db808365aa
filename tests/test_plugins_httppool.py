"""The plugins' HTTP client (postdesk.plugins.httppool) against real loopback servers."""

from __future__ import annotations

import asyncio
import http.client

import pytest

from postdesk.plugins.httppool import HttpPool
from tests.httpstub import Receiver, Shop


async def _raw_server(answers: list[bytes], seen: list[bytes]) -> tuple[asyncio.Server, int]:
    """A loopback server writing ``answers`` in turn, one per request, then closing after
    each answer that says ``Connection: close``; records each request's head in ``seen``."""

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while answers:
                head = await reader.readuntil(b"\r\n\r\n")
                seen.append(head)
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                answer = answers.pop(0)
                writer.write(answer)
                await writer.drain()
                if b"Connection: close" in answer:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(talk, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_chunked_and_sized_answers_over_one_kept_connection() -> None:
    async def run() -> None:
        seen: list[bytes] = []
        answers = [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'4;x=1\r\n{"a"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\nX-Trailer: y\r\n\r\n',
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ]
        server, port = await _raw_server(answers, seen)
        pool = HttpPool(2, 5.0)
        try:
            url = f"http://127.0.0.1:{port}/x?y=1"
            assert await pool.request("GET", url) == (200, b'{"a": 1}')
            assert await pool.request("POST", url, b"{}", {"X-A": "b"}) == (201, b"ok")
            assert await pool.request("POST", url, b"[]") == (204, b"")
        finally:
            pool.close()
            server.close()
        assert len(seen) == 3  # one connection carried them all (the server answers one)
        assert seen[0].startswith(b"GET /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"X-A: b\r\nContent-Length: 2\r\n" in seen[1]

    asyncio.run(run())


def test_a_connection_the_server_closed_is_opened_again() -> None:
    async def run() -> None:
        seen: list[bytes] = []
        close = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1"
        server, port = await _raw_server([close, close], seen)
        pool = HttpPool(1, 5.0)
        try:
            url = f"http://127.0.0.1:{port}/"
            assert await pool.request("GET", url) == (200, b"1")
            assert await pool.request("GET", url) == (200, b"1")
        finally:
            pool.close()
            server.close()
        assert len(seen) == 2

    asyncio.run(run())


def test_http_1_0_servers_timeouts_and_refusals() -> None:
    async def run() -> None:
        with Shop() as shop, Receiver() as receiver:  # http.server: HTTP/1.0, read to close
            pool = HttpPool(4, 1.0)
            status, body = await pool.request("GET", f"{shop.url}/orders/10001")
            assert status == 200 and b"10001" in body
            status, _body = await pool.request("POST", f"{receiver.url}/hook", b"{}")
            assert 200 <= status < 300
            shop.hang = True
            with pytest.raises(TimeoutError):
                await pool.request("GET", f"{shop.url}/orders/10001")
            shop.released.set()
            pool.close()
        with pytest.raises(OSError):
            await pool.request("GET", shop.url + "/orders/1")  # nobody listens any more
        with pytest.raises(http.client.HTTPException):
            await pool.request("GET", "ftp://127.0.0.1/")

    asyncio.run(run())


def test_a_line_break_in_a_header_or_the_target_is_refused_before_anything_is_sent() -> None:
    async def run() -> None:
        seen: list[bytes] = []
        server, port = await _raw_server([b"HTTP/1.1 204 No Content\r\n\r\n"], seen)
        pool = HttpPool(2, 2.0)
        url = f"http://127.0.0.1:{port}/hook"
        with pytest.raises(ValueError, match="control character"):
            await pool.request("POST", url, b"{}", {"Authorization": "Bearer x\r\nX-Evil: 1"})
        with pytest.raises(http.client.InvalidURL):
            await pool.request("GET", url + "/a b HTTP/1.1\r\nX-Evil: 1")
        status, _body = await pool.request("POST", url, b"{}", {"Authorization": "Bearer x"})
        assert status == 204 and len(seen) == 1 and b"X-Evil" not in seen[0]
        pool.close()
        server.close()

    asyncio.run(run())


def test_an_answer_over_the_body_limit_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("postdesk.plugins.httppool.BODY_LIMIT", 100)
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n" + b"x" * 101,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + b"x" * 64 + b"\r\n"
        b"40\r\n" + b"x" * 64 + b"\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 101,
        b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 100,
    ]

    async def run() -> None:
        server, port = await _raw_server(answers, [])
        pool = HttpPool(1, 2.0)
        url = f"http://127.0.0.1:{port}/orders"
        for _too_big in range(3):
            with pytest.raises(http.client.HTTPException, match="100"):
                await pool.request("GET", url)
        status, body = await pool.request("GET", url)
        assert status == 200 and body == b"x" * 100
        pool.close()
        server.close()

    asyncio.run(run())
