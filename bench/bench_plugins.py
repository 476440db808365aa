"""Plugin benchmark: throughput with the three built-in plugins on and a 50 ms shop, in one run.

Runs ``postdesk serve`` twice on SQLite with the same load (bench_smtp's harness) and one agent,
so every new ticket writes an agent notification: (a) without plugins, (b) with
``postdesk.plugins.crm``, ``postdesk.plugins.orders_http`` against a loopback shop answering
every request after 50 ms, and ``postdesk.plugins.notify_webhook`` posting to a loopback
receiver. Prints intake and drain rates for both and the loss in percent.

    python bench/bench_plugins.py --messages 1000 --connections 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench_smtp import blast, free_port, wait_all_committed, wait_for_port
from sqlalchemy import create_engine, text

SERVERS = textwrap.dedent(
    """
    import json, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    DELAY = float(sys.argv[2])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # the shop: one order per number, two per customer
            time.sleep(DELAY)
            number = self.path.rpartition("/")[2]
            if "email=" in self.path:
                data = {"orders": [{"id": "A1", "state": "shipped"}, {"id": "A2", "state": "paid"}]}
            else:
                data = {"id": number, "state": "processing", "total": "12.00"}
            self._send(200, json.dumps(data).encode())

        def do_POST(self):  # the webhook receiver
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._send(204, b"")

        def _send(self, status, body):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)


def plugin_config(http_port: int) -> str:
    """The three built-in plugins, against the loopback shop and receiver."""
    url = f"http://127.0.0.1:{http_port}"
    return textwrap.dedent(
        f"""
        [plugins]
        enabled = ["postdesk.plugins.crm", "postdesk.plugins.orders_http", "postdesk.plugins.notify_webhook"]
        [plugins.crm]
        tier_priority = {{ gold = "high" }}
        [plugins.orders_http]
        by_number_url = "{url}/orders/{{number}}"
        by_email_url = "{url}/orders?email={{email}}"
        list_field = "orders"
        fields = {{ number = "id", status = "state", total = "total" }}
        [plugins.notify_webhook]
        urls = ["{url}/hook"]
        secret = "bench"
        events = ["ticket.created"]
        """
    )


def run(args: argparse.Namespace, workdir: Path, extra: str) -> tuple[float, float]:
    """One daemon run: (intake msg/s, drain msg/s from first 250 to last commit)."""
    port = free_port()
    workdir.mkdir(parents=True)
    config = workdir / "postdesk.toml"
    config.write_text(
        f'[helpdesk]\naddress = "support@example.com"\ntag = "Bench"\ndata_dir = "{workdir / "data"}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{port}"\n'
        "[outbound]\nauto_per_recipient_10min = 1000000\nauto_per_recipient_day = 1000000\nauto_total_per_hour = 1000000\n"
        '[[agents]]\nemail = "agent@example.com"\nname = "Agent"\n' + extra
    )
    with (workdir / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port)
        time.sleep(3)  # let the worker process start, as it would long before mail arrives
        wall, accepted, _latencies = asyncio.run(
            blast(port, args.messages, args.connections, args.size)
        )
        engine = create_engine(f"sqlite:///{workdir / 'data' / 'postdesk.db'}")
        committed = wait_all_committed(engine, len(accepted))
        drain = time.time()
        with engine.connect() as connection:
            facts = connection.execute(
                text("SELECT count(*) FROM messages WHERE text LIKE '%Order:     %'")
            ).scalar_one()
        print(f"  notifications carrying order facts: {facts}")
    finally:
        daemon.terminate()
        daemon.wait(60)
    return args.messages / wall, len(committed) / (drain - min(accepted.values()))


def main() -> None:
    """Run without and with plugins and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--size", type=int, default=4000, help="approximate body bytes")
    parser.add_argument("--shop-delay", type=float, default=0.05, help="seconds per shop answer")
    args = parser.parse_args()
    http_port = free_port()
    servers = subprocess.Popen(
        [sys.executable, "-c", SERVERS, str(http_port), str(args.shop_delay)]
    )
    try:
        wait_for_port(http_port)
        with tempfile.TemporaryDirectory() as base:
            print("without plugins:")
            plain = run(args, Path(base) / "plain", "")
        with tempfile.TemporaryDirectory() as base:
            print(f"with crm, orders_http (shop {args.shop_delay * 1000:.0f} ms), notify_webhook:")
            plugged = run(args, Path(base) / "plugins", plugin_config(http_port))
    finally:
        servers.terminate()
        servers.wait()
    print(f"messages: {args.messages} over {args.connections} connections, cpus {os.cpu_count()}")
    for label, index in (("intake", 0), ("drain", 1)):
        loss = (1 - plugged[index] / plain[index]) * 100
        print(
            f"{label:<6} rate: {plain[index]:8.1f} msg/s without, {plugged[index]:8.1f} msg/s with "
            f"plugins: ratio {plugged[index] / plain[index]:.2f}, loss {loss:5.1f}%"
        )


if __name__ == "__main__":
    main()
