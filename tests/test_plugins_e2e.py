"""End to end with ``postdesk serve``: the built-in plugins, a misbehaving plugin, and an
installed third-party plugin, against real HTTP servers on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from tests.httpstub import Receiver, Shop
from tests.support import (
    CUSTOMER,
    Daemon,
    SmtpSink,
    make_mail,
    send,
    wait_until,
    write_config,
)

AGENT = "alice@example.com"
WEBHOOK_SECRET = "webhook-secret-for-tests"
REPO = Path(__file__).resolve().parent.parent


def _plain(mail: EmailMessage) -> str:
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


@contextmanager
def _serve(
    tmp_path: Path, database_url: str, sink: SmtpSink, extra: str, env: dict[str, str] | None = None
) -> Iterator[Daemon]:
    agents = f'[[agents]]\nemail = "{AGENT}"\nname = "Alice"\n'
    config = write_config(
        tmp_path, database_url, relay=f"smtp://127.0.0.1:{sink.port}", extra=agents + extra
    )
    daemon = Daemon(config, tmp_path, env)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def _builtins(shop: Shop, receiver: Receiver) -> str:
    return textwrap.dedent(
        f"""
        [plugins]
        enabled = ["postdesk.plugins.crm", "postdesk.plugins.orders_http", "postdesk.plugins.notify_webhook", "recorder"]
        lookup_timeout_seconds = 10  # the worker's first lookups may be slow on a busy machine
        [plugins.crm]
        default_region = "RU"
        tier_priority = {{ gold = "high" }}
        [plugins.orders_http]
        by_number_url = "{shop.url}/orders/{{number}}"
        by_email_url = "{shop.url}/orders?email={{email}}"
        list_field = "orders"
        fields = {{ number = "id", status = "state", total = "total.amount" }}
        token_env = "SHOP_TOKEN"
        [plugins.notify_webhook]
        urls = ["{receiver.url}/hook"]
        secret_env = "WEBHOOK_SECRET"
        retry_base_seconds = 0.2
        """
    )


RECORDER = """
import json, os
from postdesk.plugins import hookimpl

def _write(*record):
    with open(os.environ["RECORDER_FILE"], "a") as out:
        out.write(json.dumps(record, default=list) + "\\n")

@hookimpl
def postdesk_ticket_created(ticket):
    _write("created", ticket["number"], ticket["status"], ticket["priority"])

@hookimpl
async def postdesk_message_added(ticket, message):
    _write("message", ticket["number"], message["subject"], message["direction"])

@hookimpl
def postdesk_ticket_updated(ticket, changes):
    _write("updated", ticket["number"], dict(changes))
"""


def _records(path: Path) -> list[list[object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_builtin_plugins_fill_the_notification_set_priority_and_deliver_webhooks(
    tmp_path: Path, database_url: str, sink: SmtpSink
) -> None:
    (tmp_path / "recorder.py").write_text(RECORDER)
    recorded = tmp_path / "recorded.jsonl"
    env = {
        "SHOP_TOKEN": "t0ken",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PYTHONPATH": str(tmp_path),
        "RECORDER_FILE": str(recorded),
    }
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        f"Email,Name,Company,Phone,Tier\n{CUSTOMER},Carol Jones,ACME Ltd,8 495 123 45 67,Gold\n"
    )
    with (
        Shop(delay=0.05, token="t0ken") as shop,
        Receiver(fail_first=2) as receiver,
        _serve(tmp_path, database_url, sink, _builtins(shop, receiver), env) as daemon,
    ):
        imported = daemon.cli("contacts", "import", str(contacts))
        assert "1 contact(s) created" in imported.stdout
        code, _ = send(
            daemon.port,
            make_mail(subject="Where is order 10001?", body="Order 10001 is late.\n"),
        )
        assert code == 250
        mail = wait_until(lambda: sink.to(AGENT), what="agent notification")[0]
        text = _plain(mail)
        assert "Contact:   Carol Jones, ACME Ltd (tier gold), +74951234567" in text
        assert "Order:     10001, status: shipped, total: 49.90" in text
        assert "Order:     10002, status: processing" in text, "the sender's own orders too"
        assert all(auth == "Bearer t0ken" for _path, auth in shop.requests)
        # The gold tier raises the priority: with the ticket, or once the lookups answer (the
        # notification is released in the same transaction).
        assert daemon.ticket(1)["priority"] == "high", "gold tier raises the priority"

        # The receiver failed twice; retries deliver every event, each correctly signed.
        wait_until(
            lambda: {"ticket.created", "message.added"} <= set(receiver.events()),
            what="webhooks",
        )
        for headers, body in receiver.received:
            expected = (
                "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
            )
            assert headers["X-Postdesk-Signature"] == expected
        created = next(
            json.loads(b)
            for _h, b in receiver.received
            if json.loads(b)["event"] == "ticket.created"
        )
        assert created["ticket"]["number"] == 1 and created["ticket"]["requester"] == CUSTOMER

        # A customer writing on a solved ticket reopens it: ticket.updated with old and new.
        daemon.update_ticket(1, status="solved")
        send(
            daemon.port,
            make_mail(subject="Re: [Example #1] Where is order 10001?", body="Still late.\n"),
        )

        def reopened() -> list[dict[str, Any]]:
            documents = [json.loads(b) for _h, b in receiver.received]
            return [
                d
                for d in documents
                if d["event"] == "ticket.updated" and "status" in d["detail"]["changes"]
            ]

        updated = wait_until(reopened, what="ticket.updated webhook")[0]
        assert updated["detail"]["changes"]["status"] == ["solved", "open"]

        # The event hooks themselves, after commit, with read-only snapshots. A priority the
        # contact's tier raised once the lookups answered (after the commit) is announced then.
        def created() -> list[list[object]]:
            return [r for r in _records(recorded) if r[0] == "created"]

        created_priority = wait_until(created, what="ticket created")[0][3]
        late = [["updated", 1, {"priority": ["normal", "high"]}]]
        expected = [
            ["created", 1, "new", created_priority],
            ["message", 1, "Where is order 10001?", "in"],
            ["message", 1, "Re: [Example #1] Where is order 10001?", "in"],
            ["updated", 1, {"status": ["solved", "open"]}],
        ] + (late if created_priority == "normal" else [])
        wait_until(lambda: len(_records(recorded)) == len(expected), what="recorded events")
        assert sorted(_records(recorded), key=str) == sorted(expected, key=str)


def test_a_hanging_shop_never_delays_the_acknowledgement(
    tmp_path: Path, database_url: str, sink: SmtpSink
) -> None:
    """The shop hangs until the test lets it answer: the acknowledgement is out before that,
    the agent notification is held meanwhile and then carries the orders."""
    extra = textwrap.dedent(
        """
        [plugins]
        enabled = ["postdesk.plugins.crm", "postdesk.plugins.orders_http"]
        lookup_timeout_seconds = 60
        [plugins.orders_http]
        by_number_url = "{url}/orders/{{number}}"
        by_email_url = "{url}/orders?email={{email}}"
        list_field = "orders"
        fields = {{ number = "id", status = "state", total = "total.amount" }}
        timeout_seconds = 60
        """
    )
    with Shop() as shop:
        shop.hang = True
        with _serve(tmp_path, database_url, sink, extra.format(url=shop.url)) as daemon:
            code, _ = send(daemon.port, make_mail(subject="Where is order 10001?", body="Late.\n"))
            assert code == 250
            ack = wait_until(lambda: sink.to(CUSTOMER), what="acknowledgement")[0]
            assert "[Example #1]" in str(ack["Subject"])
            wait_until(lambda: shop.requests, what="the shop asked (it has not answered yet)")
            assert not sink.to(AGENT), "the notification waits for the lookups"
            shop.released.set()
            mail = wait_until(lambda: sink.to(AGENT), what="agent notification")[0]
            assert "Order:     10001, status: shipped, total: 49.90" in _plain(mail)
            copy = [m for m in daemon.ticket(1)["messages"] if m["direction"] == "out"]
            assert any("Order:     10001" in m["text"] for m in copy), "the ticket's copy too"
            assert len(sink.to(CUSTOMER)) == 1 and len(sink.to(AGENT)) == 1


def test_an_installed_plugin_loads_by_its_entry_point(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    site, source = tmp_path / "site", tmp_path / "postdesk-hello"
    shutil.copytree(REPO / "docs" / "examples" / "postdesk-hello", source)  # builds write here
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    templates = tmp_path / "templates" / "customer"
    templates.mkdir(parents=True)
    (templates / "acknowledgement.txt.j2").write_text("{{ plugins.greeting }}, we got your mail.\n")
    log_file = tmp_path / "hello.log"
    extra = f'[plugins.hello]\nlog_file = "{log_file}"\ngreeting = "Ahoy"\n'
    env = {
        "PYTHONPATH": str(site),
        "POSTDESK_HELPDESK_TEMPLATES_DIR": f'"{tmp_path / "templates"}"',
    }
    with _serve(tmp_path, sqlite_url, sink, extra, env) as daemon:
        assert "ok    plugins: hello" in daemon.cli("check", check=False).stdout
        send(daemon.port, make_mail(subject="Printer on fire"))
        ack = wait_until(lambda: sink.to(CUSTOMER), what="acknowledgement")[0]
        assert _plain(ack).startswith("Ahoy, we got your mail."), "postdesk_template_variables"
        line = wait_until(
            lambda: log_file.exists() and log_file.read_text(), what="hello's log line"
        )
        assert line == f"[Example #1] {CUSTOMER} Printer on fire\n", "postdesk_ticket_created"
    assert os.path.isdir(site / "postdesk_hello")


ALERTS = """
import json, os
from postdesk.plugins import hookimpl

@hookimpl
def postdesk_notify(event, ticket, detail):
    if event.startswith("alert."):
        number = ticket["number"] if ticket is not None else None
        with open(os.environ["RECORDER_FILE"], "a") as out:
            out.write(json.dumps([event, number, sorted(detail)]) + "\\n")
"""


def test_alerts_reach_plugins_as_notify_events(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    (tmp_path / "alerts.py").write_text(ALERTS)
    recorded = tmp_path / "alerts.jsonl"
    env = {"PYTHONPATH": str(tmp_path), "RECORDER_FILE": str(recorded)}
    extra = '[plugins]\nenabled = ["alerts"]\n'
    with _serve(tmp_path, sqlite_url, sink, extra, env) as daemon:
        send(daemon.port, make_mail())
        wait_until(lambda: sink.to(AGENT), timeout=30, what="agent notification")
        # Mail from an agent's address that nothing authenticates: alert.spoofed_agent.
        forged = make_mail(subject="Re: [Example #1] Printer on fire", sender=AGENT)
        assert send(daemon.port, forged)[0] == 250
        # Mail without a usable From: quarantined, alert.quarantined after the commit.
        assert send(daemon.port, make_mail(sender="no address here"))[0] == 250
        # The relay refuses the next acknowledgement for good: alert.relay_refused.
        sink.reply = "550 5.1.1 no such user"
        send(daemon.port, make_mail(subject="Second problem", sender="dave@example.org"))

        def events() -> set[str]:
            return {event for event, _number, _keys in _records(recorded)}

        wanted = {"alert.spoofed_agent", "alert.quarantined", "alert.relay_refused"}
        wait_until(lambda: wanted <= events(), timeout=60, what=f"alerts {wanted}")
    by_event = {event: (number, keys) for event, number, keys in _records(recorded)}
    assert by_event["alert.spoofed_agent"][0] is not None, "about the ticket the mail made"
    assert by_event["alert.quarantined"] == (None, ["from", "reason", "spool_id"])
    assert by_event["alert.relay_refused"][0] is None
    assert "recipient" in by_event["alert.relay_refused"][1]


JOBBER = """
import asyncio, json, os

async def serve(stop):
    with open(os.environ["RECORDER_FILE"], "a") as out:
        out.write(json.dumps(["started", os.getpid(), os.getppid()]) + "\\n")
    await stop.wait()
    with open(os.environ["RECORDER_FILE"], "a") as out:
        out.write(json.dumps(["stopped", os.getpid()]) + "\\n")
"""


def test_a_plugins_long_running_job_runs_in_the_plugins_process_and_is_told_to_stop(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    """A plugin with only a job (``async def serve(stop)``, like the webhook deliveries): serve
    starts its plugins process for it, the job runs there, not in serve, and ends at the stop."""
    (tmp_path / "jobber.py").write_text(JOBBER)
    recorded = tmp_path / "recorded.jsonl"
    env = {"PYTHONPATH": str(tmp_path), "RECORDER_FILE": str(recorded)}
    with _serve(tmp_path, sqlite_url, sink, '[plugins]\nenabled = ["jobber"]\n', env) as daemon:
        assert daemon.process is not None
        serve_pid = daemon.process.pid
        [(_, job_pid, job_parent)] = wait_until(lambda: _records(recorded), what="job started")
    assert job_pid != serve_pid and job_parent == serve_pid, "in a child of serve"
    assert _records(recorded)[-1] == ["stopped", job_pid]
