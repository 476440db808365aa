"""Real HTTP servers on loopback for the plugin tests: a shop JSON API and a webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class _Listening(ThreadingHTTPServer):
    """A threading HTTP server that takes a burst of connections at once, as a real one does
    (the standard library's listens with a backlog of 5: the rest would wait for a SYN retry)."""

    request_queue_size = 128


class _Server:
    """A ThreadingHTTPServer on a free loopback port, run in a thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = _Listening(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Shop(_Server):
    """``GET /orders/<number>`` and ``GET /orders?email=``; answers after ``delay`` seconds."""

    def __init__(self, delay: float = 0.0, token: str = "") -> None:
        super().__init__(_ShopHandler)
        self.delay = delay
        self.hang = False
        self.released = threading.Event()  # ends a hang before its 30 s
        self.token = token
        self.requests: list[tuple[str, str]] = []  # (path with query, Authorization)
        self.at_once = 0  # requests being answered now
        self.most_at_once = 0  # the most ever answered at once
        self.lock = threading.Lock()
        self.orders = {
            "10001": {"id": "10001", "state": "shipped", "total": {"amount": "49.90"}},
            "10002": {"id": "10002", "state": "processing", "total": {"amount": "5.00"}},
        }
        self.by_email = {"carol@example.org": ["10002"]}


class _ShopHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        shop: Shop = self.server.owner  # type: ignore[attr-defined]
        with shop.lock:
            shop.at_once += 1
            shop.most_at_once = max(shop.most_at_once, shop.at_once)
        try:
            self._get(shop)
        finally:
            with shop.lock:
                shop.at_once -= 1

    def _get(self, shop: Shop) -> None:
        shop.requests.append((self.path, self.headers.get("Authorization", "")))
        if shop.hang:
            shop.released.wait(30)
        time.sleep(shop.delay)
        if shop.token and self.headers.get("Authorization") != f"Bearer {shop.token}":
            return self._answer(401, {"error": "unauthorized"})
        parts = urlsplit(self.path)
        if parts.path.startswith("/orders/"):
            order = shop.orders.get(parts.path.rpartition("/")[2])
            return self._answer(200, order) if order else self._answer(404, {"error": "no"})
        email = parse_qs(parts.query).get("email", [""])[0]
        numbers = shop.by_email.get(email, [])
        self._answer(200, {"orders": [shop.orders[n] for n in numbers]})

    def _answer(self, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


class Receiver(_Server):
    """Records POSTs; answers 500 to the first ``fail_first`` ones, or hangs while ``hang``."""

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__(_ReceiverHandler)
        self.fail_first = fail_first
        self.hang = False
        self.attempts = 0
        self.received: list[tuple[dict[str, str], bytes]] = []  # successful deliveries
        self.connections: set[int] = set()  # client ports POSTs came from

    def events(self) -> list[str]:
        """The ``event`` of each delivered JSON document."""
        return [json.loads(body).get("event", "") for _headers, body in self.received]


class _ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # connections stay open for the next POST

    def do_POST(self) -> None:
        receiver: Receiver = self.server.owner  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        receiver.attempts += 1
        receiver.connections.add(self.client_address[1])
        if receiver.hang:
            time.sleep(30)
            return
        if receiver.attempts <= receiver.fail_first:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        receiver.received.append(({k: v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return
