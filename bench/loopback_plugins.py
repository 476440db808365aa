"""The plugins the benchmarks enable, and the loopback shop and webhook receiver they talk to.

``bench_plugins`` and ``bench_pipeline --plugins`` share them: the three built-in plugins
(``postdesk.plugins.crm``, ``postdesk.plugins.orders_http`` against a shop answering every
request after ``delay`` seconds, ``postdesk.plugins.notify_webhook`` posting to a receiver), as
a new user would enable them.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator

from bench_smtp import free_port, wait_for_port

SERVERS = textwrap.dedent(
    """
    import asyncio, json, sys

    DELAY = float(sys.argv[2])
    BY_EMAIL = json.dumps({"orders": [{"id": "A1", "state": "shipped"}, {"id": "A2", "state": "paid"}]})

    async def answer(reader, writer):  # HTTP/1.1, kept alive: one request at a time
        try:
            while head := await reader.readuntil(b"\\r\\n\\r\\n"):
                method, path, _version = head.split(b"\\r\\n", 1)[0].decode().split(" ", 2)
                length = 0
                for line in head.split(b"\\r\\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                if method == "GET":  # the shop: one order per number, two per customer
                    await asyncio.sleep(DELAY)
                    if "email=" in path:
                        status, body = "200 OK", BY_EMAIL
                    else:
                        number = path.rpartition("/")[2]
                        body = json.dumps({"id": number, "state": "processing", "total": "12.00"})
                        status = "200 OK"
                else:  # the webhook receiver
                    status, body = "204 No Content", ""
                data = body.encode()
                writer.write(
                    f"HTTP/1.1 {status}\\r\\nContent-Length: {len(data)}\\r\\n\\r\\n".encode() + data
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(answer, "127.0.0.1", int(sys.argv[1]))
        await server.serve_forever()

    asyncio.run(main())
    """
)


CRM = '[plugins.crm]\ntier_priority = { gold = "high" }\n'
ORDERS = """[plugins.orders_http]
by_number_url = "{url}/orders/{{number}}"
by_email_url = "{url}/orders?email={{email}}"
list_field = "orders"
fields = {{ number = "id", status = "state", total = "total" }}
"""
WEBHOOK = (
    '[plugins.notify_webhook]\nurls = ["{url}/hook"]\nsecret = "bench"\nevents = ["{event}"]\n'
)
MODULES = {
    "crm": "postdesk.plugins.crm",
    "orders": "postdesk.plugins.orders_http",
    "webhook": "postdesk.plugins.notify_webhook",
    "webhook-idle": "postdesk.plugins.notify_webhook",
}
VARIANTS = {  # name -> plugins enabled; "all" is the speed target, the others help find a cost
    "all": ("crm", "orders", "webhook"),
    "lookups": ("crm", "orders"),
    "webhook": ("webhook",),
    "webhook-idle": ("webhook-idle",),  # enabled, but no event it sends ever happens
}


def plugin_config(http_port: int, variant: str) -> str:
    """The plugins of ``variant``, against the loopback shop and receiver."""
    url = f"http://127.0.0.1:{http_port}"
    parts = VARIANTS[variant]
    enabled = ", ".join(f'"{MODULES[part]}"' for part in parts)
    tables = {
        "crm": CRM,
        "orders": ORDERS.format(url=url),
        "webhook": WEBHOOK.format(url=url, event="ticket.created"),
        "webhook-idle": WEBHOOK.format(url=url, event="sla.breached"),
    }
    return f"[plugins]\nenabled = [{enabled}]\n" + "".join(tables[part] for part in parts)


@contextlib.contextmanager
def loopback_shop(delay: float) -> Iterator[tuple[int, int]]:
    """Start the shop and webhook receiver, answering each shop request after ``delay``
    seconds; yields (their loopback port, their process id); stopped on exit."""
    port = free_port()
    servers = subprocess.Popen([sys.executable, "-c", SERVERS, str(port), str(delay)])
    try:
        wait_for_port(port)
        yield port, servers.pid
    finally:
        servers.terminate()
        servers.wait()
