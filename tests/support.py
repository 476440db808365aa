"""Test helpers: the daemon as a real subprocess, a real SMTP sink, mail builders, polling."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any, TypeVar

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, select, update

from postdesk.daemon.config import Settings, load_settings
from postdesk.daemon.store.db import make_engine, session_factory
from postdesk.daemon.store.views import list_tickets, load_ticket, ticket_dict
from postdesk.models.schema import Message, OutboxItem, QuarantineItem, Ticket

HELPDESK = "support@example.com"
CUSTOMER = "carol@example.org"
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(tmp_path: Path, database_url: str, relay: str = "", extra: str = "") -> Path:
    """Write a postdesk.toml for a test and return its path."""
    config = tmp_path / "postdesk.toml"
    config.write_text(
        f"""
[helpdesk]
name = "Example Support"
address = "{HELPDESK}"
tag = "Example"
database = "{database_url}"
data_dir = "{tmp_path / "data"}"
secret = "test-secret-not-for-production"

[smtp]
listen = "127.0.0.1:{free_port()}"
max_message_bytes = 1000000

[outbound]
relay = "{relay}"
retry_base_seconds = 0.2
{extra}
"""
    )
    return config


def make_mail(
    subject: str = "Printer on fire",
    body: str = "Hello,\nmy printer is on fire.\nCarol\n",
    sender: str = CUSTOMER,
    to: str = HELPDESK,
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """An RFC 5322 message as bytes, built through the stdlib API."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id or make_msgid(domain="example.org")
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message.as_bytes(policy=email.policy.SMTP)


def send(port: int, raw: bytes, sender: str = CUSTOMER, to: str = HELPDESK) -> tuple[int, bytes]:
    """Send one message over a real SMTP session; returns the reply to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        code, reply = client.mail(sender)
        assert code == 250, reply
        code, reply = client.rcpt(to)
        if code != 250:
            return code, reply
        return client.data(raw)


def wait_until(probe: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class SmtpSink:
    """A real aiosmtpd server on loopback recording what it receives; can answer with errors."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[Envelope, EmailMessage]] = []
        self.reply: str | None = None  # e.g. "451 4.3.0 try later" to refuse mail
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Record the mail, or refuse it with ``self.reply``."""
        if self.reply:
            return self.reply
        parsed = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        assert isinstance(parsed, EmailMessage)
        self.received.append((envelope, parsed))
        return "250 2.0.0 Ok"

    def start(self) -> None:
        """Start listening."""
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        self._controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        """The mails whose envelope was addressed to ``address``."""
        return [msg for envelope, msg in self.received if address in envelope.rcpt_tos]


class Daemon:
    """``postdesk serve`` in a subprocess, plus direct reads of its database."""

    def __init__(self, config: Path, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.workdir = workdir
        self.settings: Settings = load_settings(str(config), environ={})
        self.port = self.settings.smtp.host_port[1]
        self.log_path = workdir / f"daemon-{self.port}.log"
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self._engine = make_engine(self.settings.database_url)
        self._factory = session_factory(self._engine)

    def start(self) -> None:
        """Start the daemon and wait until it accepts SMTP connections."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "postdesk.daemon.cli",
                    "--config",
                    str(self.config),
                    "serve",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.env,
            )
        wait_until(
            self._accepting, timeout=30, what=f"daemon on port {self.port}; log: {self.log_path}"
        )

    def _accepting(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"daemon exited early:\n{self.log()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit status. Also closes the test's own connections."""
        self._engine.dispose()
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(
                f"daemon did not stop within {timeout}s:\n{self.log()[-3000:]}"
            ) from None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        self._engine.dispose()

    def log(self) -> str:
        """Everything the daemon logged so far."""
        return self.log_path.read_text(errors="replace")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a ``postdesk`` command against this daemon's configuration."""
        result = subprocess.run(
            [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=self.env,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"postdesk {' '.join(args)} failed: {result.stderr}")
        return result

    def tickets(self) -> list[dict[str, Any]]:
        """Every ticket, with messages, read from the database."""
        with self._factory() as session:
            return [
                ticket_dict(load_ticket(session, t.number), self.settings.helpdesk.tag)  # type: ignore[arg-type]
                for t in list_tickets(session)
            ]

    def ticket(self, number: int) -> dict[str, Any]:
        """One ticket as ``postdesk ticket N --json`` would show it."""
        with self._factory() as session:
            ticket = load_ticket(session, number)
            assert ticket is not None, f"no ticket {number}"
            return ticket_dict(ticket, self.settings.helpdesk.tag)

    def update_ticket(self, number: int, **values: Any) -> None:
        """Change a ticket directly in the database (to set up a test's starting state)."""
        with self._factory() as session, session.begin():
            session.execute(update(Ticket).where(Ticket.number == number).values(**values))

    def inbound_message_ids(self) -> list[str]:
        """Message-IDs of every stored inbound message (duplicates included)."""
        with self._factory() as session:
            query = select(Message.message_id).where(Message.direction == "in")
            return list(session.execute(query).scalars())

    def quarantined(self) -> list[QuarantineItem]:
        """Every quarantine record."""
        with self._factory() as session:
            return list(session.execute(select(QuarantineItem)).scalars())

    def outbox(self) -> list[OutboxItem]:
        """Every outbox row."""
        with self._factory() as session:
            return list(session.execute(select(OutboxItem).order_by(OutboxItem.id)).scalars())

    def count(self, model: type) -> int:
        """How many rows the table of ``model`` holds."""
        with self._factory() as session:
            return int(session.execute(select(func.count()).select_from(model)).scalar_one())

    def spool_files(self) -> list[Path]:
        """Files still in the spool (waiting, in work, or half-written)."""
        root = self.settings.data_dir / "spool"
        return [p for sub in ("tmp", "new", "work") for p in (root / sub).glob("*")]


def count_tasks(loop: asyncio.AbstractEventLoop) -> list[str]:
    """From now on, the qualified name of every coroutine ``loop`` makes a task of, in order."""
    created: list[str] = []

    def factory(owner: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        created.append(coro.__qualname__)
        return asyncio.Task(coro, loop=owner, **kwargs)

    loop.set_task_factory(factory)
    return created
