"""Helpers for the agent tests: a daemon with agents, replies as mail clients write them, reads.

Three agents: Alice and Bob in group L1, Dave in L2. The helpdesk trusts Authentication-Results
from ``mx.example.com`` when they arrive over SMTP from 127.0.0.2 (our "MX"); every other
loopback address plays the outside world.
"""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from sqlalchemy import select

from postdesk.daemon.agents.tokens import Tokens
from postdesk.daemon.store.db import make_engine, session_factory
from postdesk.models.schema import Event, Ticket
from tests.support import HELPDESK, Daemon, SmtpSink, wait_until, write_config

ALICE, BOB, DAVE = "alice@example.com", "bob@example.com", "dave@example.net"
AGENTS = (ALICE, BOB, DAVE)
MX = "127.0.0.2"  # the trusted relay
OUTSIDE = "127.0.0.3"  # anyone else
SECRET = b"test-secret-not-for-production"  # as written by tests.support.write_config

AGENTS_TOML = f"""
[[agents]]
email = "{ALICE}"
name = "Alice"
groups = ["L1"]

[[agents]]
email = "{BOB}"
name = "Bob"
groups = ["L1"]

[[agents]]
email = "{DAVE}"
name = "Dave"
groups = ["L2"]

[auth]
trusted_authserv_ids = ["mx.example.com"]
trusted_relays = ["{MX}"]
"""
ROUTING_TOML = """
[routing]
categories = { billing = "L1", outage = "L2" }
"""
# Agents get many automatic mails in a test; the per-recipient limits are for customers.
GENEROUS_LIMITS = {
    "POSTDESK_OUTBOUND_AUTO_PER_RECIPIENT_10MIN": "1000",
    "POSTDESK_OUTBOUND_AUTO_PER_RECIPIENT_DAY": "1000",
}


@contextmanager
def daemon_with_agents(
    tmp_path: Path,
    database_url: str,
    sink: SmtpSink,
    routing: str = ROUTING_TOML,
    env: dict[str, str] | None = None,
) -> Iterator[Daemon]:
    """The running daemon with the three agents, relaying to ``sink``; stopped afterwards."""
    config = write_config(
        tmp_path, database_url, relay=f"smtp://127.0.0.1:{sink.port}", extra=AGENTS_TOML + routing
    )
    daemon = Daemon(config, tmp_path, env={**GENEROUS_LIMITS, **(env or {})})
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def tokens() -> Tokens:
    """The daemon's token checker (same secret)."""
    return Tokens(SECRET, "example.com")


def send_via(port: int, raw: bytes, sender: str, source: str) -> int:
    """Send over SMTP from loopback address ``source``; returns the DATA reply code."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as client:
        client.ehlo("client.example.org")
        client.mail(sender)
        client.rcpt(HELPDESK)
        code, _reply = client.data(raw)
        return code


def reply_to(
    original: EmailMessage,
    body: str,
    sender: str,
    headers: dict[str, str] | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
) -> bytes:
    """A reply to ``original`` as a mail client writes it: new text on top, history quoted."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = HELPDESK
    message["Subject"] = f"Re: {original['Subject']}"
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    message["In-Reply-To"] = original["Message-ID"]
    message["References"] = f"{original.get('References', '')} {original['Message-ID']}".strip()
    for name, value in (headers or {}).items():
        message[name] = value
    quoted = "\n".join(f"> {line}" for line in plain_text(original).splitlines())
    message.set_content(f"{body}\n\nOn Mon, 6 May 2024, Example Support wrote:\n{quoted}\n")
    for filename, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def plain_text(message: EmailMessage) -> str:
    """The text/plain body of ``message``."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def notifications(sink: SmtpSink, agent: str, number: int) -> list[EmailMessage]:
    """Notifications ``agent`` received about ticket ``number``."""
    return [m for m in sink.to(agent) if f"[Example #{number}]" in m["Subject"]]


def wait_mails(sink: SmtpSink, address: str, count: int, what: str) -> list[EmailMessage]:
    """Wait until ``address`` has received ``count`` mails; return them."""

    def arrived() -> list[EmailMessage]:
        mails = sink.to(address)
        return mails if len(mails) >= count else []

    return wait_until(arrived, what=what)


def events(daemon: Daemon, number: int) -> list[tuple[str, str, dict[str, Any]]]:
    """The event log of ticket ``number``: (actor, kind, detail)."""
    engine = make_engine(daemon.settings.database_url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(Event.actor, Event.kind, Event.detail)
                .join(Ticket, Ticket.id == Event.ticket_id)
                .where(Ticket.number == number)
                .order_by(Event.id)
            ).all()
    finally:
        engine.dispose()
    return [(actor, kind, json.loads(detail or "{}")) for actor, kind, detail in rows]
