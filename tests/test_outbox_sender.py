"""The outbox and its sender, against a real aiosmtpd relay on loopback (R-29, R-32, R-40, R-60)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.agents.tokens import Token, Tokens
from postdesk.daemon.config import HelpdeskSettings, OutboundSettings, Settings
from postdesk.daemon.outbound import sender as sender_module
from postdesk.daemon.outbound.beside import SenderBeside
from postdesk.daemon.outbound.outbox import enqueue
from postdesk.daemon.outbound.sender import OutboxSender
from postdesk.daemon.outbound.templating import CUSTOMER_ACKNOWLEDGEMENT, Templates
from postdesk.daemon.services import Services
from postdesk.daemon.store.db import make_engine, session_factory, transaction, upgrade_schema
from postdesk.models.schema import Message, OutboxItem, Ticket
from tests.support import SmtpSink, free_port

HELPDESK = "support@example.com"
CUSTOMER = "carol@example.org"
CRLF_SUBJECT = b"Subject: =?utf-8?q?hi=0D=0ABcc:_victim@x.com?=\r\n\r\n"


@dataclass(frozen=True)
class Env:
    """A migrated database plus the services and settings a test sends with."""

    url: str
    engine: Engine
    factory: sessionmaker[Session]
    services: Services

    @property
    def settings(self) -> Settings:
        """The settings in use."""
        return self.services.settings

    def outbound(self, **changes: Any) -> Env:
        """The same environment with some ``[outbound]`` settings changed."""
        outbound = dataclasses.replace(self.settings.outbound, **changes)
        settings = dataclasses.replace(self.settings, outbound=outbound)
        return dataclasses.replace(
            self, services=dataclasses.replace(self.services, settings=settings)
        )

    def relay_to(self, port: int) -> Env:
        """The same environment relaying to 127.0.0.1:``port``."""
        return self.outbound(relay=f"smtp://127.0.0.1:{port}")


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> Iterator[Env]:
    """A fresh database (SQLite, and PostgreSQL when reachable) with tiny retry delays."""
    settings = Settings(
        helpdesk=HelpdeskSettings(
            name="Example Support",
            address=HELPDESK,
            tag="Example",
            database=database_url,
            data_dir=str(tmp_path / "data"),
        ),
        outbound=OutboundSettings(retry_base_seconds=0.01, max_attempts=3),
    )
    engine = make_engine(database_url)
    upgrade_schema(engine)
    services = Services(settings, Tokens(b"outbox-test-secret", "example.com"), Templates(settings))
    yield Env(database_url, engine, session_factory(engine), services)
    engine.dispose()


def queue(
    env: Env,
    *,
    number: int = 1,
    to: str | list[str] = CUSTOMER,
    subject: str = "Printer on fire",
    auto: bool = True,
    agent: str | None = None,
    internal_copy: bool = False,
) -> OutboxItem | None:
    """Enqueue an acknowledgement for ticket ``number`` (created if missing) and commit."""
    with transaction(env.factory) as session:
        ticket = session.scalars(select(Ticket).where(Ticket.number == number)).first()
        if ticket is None:
            requester = to if isinstance(to, str) else to[0]
            ticket = Ticket(number=number, subject=subject, requester=requester)
            session.add(ticket)
        tag = f"[Example #{number}]"
        return enqueue(
            session,
            env.services,
            ticket=ticket,
            kind="acknowledgement",
            to=[to] if isinstance(to, str) else to,
            template=CUSTOMER_ACKNOWLEDGEMENT,
            context={
                "helpdesk": {"name": "Example Support", "address": HELPDESK},
                "ticket": {"number": number, "subject": subject, "tag": tag},
                "customer_name": "Carol",
            },
            in_reply_to=f"<in-{number}@example.org>",
            references=[f"<in-{number}@example.org>"],
            auto=auto,
            agent=agent,
            internal_copy=internal_copy,
        )


def outbox(env: Env) -> list[OutboxItem]:
    """Every outbox row, oldest first."""
    with env.factory() as session:
        return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def drain(env: Env) -> int:
    """One burst of a fresh sender."""
    handled: int = asyncio.run(OutboxSender(env.settings, env.factory).drain_once())
    return handled


def wait_until_due() -> None:
    """Sleep past the tiny retry delay the tests configure."""
    time.sleep(0.05)


def test_relay_delivery_headers_and_rows(env: Env, sink: SmtpSink) -> None:
    env = env.relay_to(sink.port)
    item = queue(env)
    assert item is not None
    assert drain(env) == 1
    [(envelope, msg)] = sink.received
    assert envelope.mail_from == HELPDESK and envelope.rcpt_tos == [CUSTOMER]
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Loop"] == HELPDESK
    assert msg["In-Reply-To"] == "<in-1@example.org>"
    assert msg["Subject"] == "[Example #1] Re: Printer on fire"
    assert env.services.tokens.verify(msg["Message-ID"]) == Token(1, None)
    [row] = outbox(env)
    assert (row.status, row.attempts, row.message_id) == ("sent", 1, item.message_id)
    assert row.sent_at is not None and row.claimed_until is None
    assert json.loads(row.recipients) == [CUSTOMER] and row.envelope_from == HELPDESK
    assert drain(env) == 0


class RefusingSink(SmtpSink):
    """A relay that refuses one recipient for good (550 at RCPT) and takes the others."""

    GONE = "gone@example.org"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        """Refuse GONE, accept anyone else."""
        if address == self.GONE:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"


def test_one_group_records_sent_partly_refused_and_refused_mail(env: Env) -> None:
    relay = RefusingSink()
    relay.start()
    try:
        env = env.relay_to(relay.port)
        clean = queue(env, number=1)
        partly = queue(env, number=2, to=[CUSTOMER, RefusingSink.GONE])
        refused = queue(env, number=3, to=RefusingSink.GONE)
        assert clean is not None and partly is not None and refused is not None
        assert drain(env) == 3
    finally:
        relay.stop()
    rows = {row.id: row for row in outbox(env)}
    assert len(relay.received) == 2
    sent = rows[clean.id]
    assert (sent.status, sent.attempts, sent.last_error) == ("sent", 1, "")
    assert sent.sent_at is not None and sent.claimed_until is None
    noted = rows[partly.id]
    assert (noted.status, noted.attempts) == ("sent", 1) and noted.sent_at is not None
    assert f"{RefusingSink.GONE} refused: 550" in noted.last_error
    failed = rows[refused.id]
    assert (failed.status, failed.attempts, failed.sent_at) == ("failed", 1, None)
    assert "550" in failed.last_error and failed.claimed_until is None


def test_a_group_of_sent_mail_is_recorded_by_one_statement(env: Env) -> None:
    """On PostgreSQL an executemany is a statement per row: the plain outcomes take one."""
    queued = [queue(env, number=number) for number in range(1, 6)]
    recorded: list[tuple[bool, int]] = []  # (executemany, parameter sets) of each UPDATE

    def heard(_conn: object, _cursor: object, statement: str, parameters: Any, *rest: Any) -> None:
        if statement.startswith("UPDATE outbox SET status"):
            recorded.append((rest[1], len(parameters) if rest[1] else 1))

    event.listen(env.engine, "before_cursor_execute", heard)
    try:
        assert drain(env) == 5  # into the Maildir: one group
    finally:
        event.remove(env.engine, "before_cursor_execute", heard)
    assert recorded == [(False, 1)]
    rows = outbox(env)
    assert sorted(row.id for row in rows) == sorted(item.id for item in queued if item)
    assert all((row.status, row.attempts, row.last_error) == ("sent", 1, "") for row in rows)


def test_outgoing_message_is_recorded_on_the_ticket(env: Env) -> None:
    item = queue(env, internal_copy=True)
    assert item is not None
    with env.factory() as session:
        message = session.scalars(select(Message)).one()
        ticket = session.scalars(select(Ticket)).one()
    assert message.ticket_id == ticket.id == item.ticket_id
    assert (message.direction, message.channel, message.author) == ("out", "outbox", HELPDESK)
    assert message.auto and message.internal and message.dedupe_key is None
    assert message.message_id == item.message_id and message.raw == item.raw
    assert "[Example #1]" in message.text and message.text == message.new_text


def test_agent_reply_is_not_marked_automatic(env: Env, sink: SmtpSink) -> None:
    env = env.relay_to(sink.port)
    assert queue(env, auto=False, agent="Alice@Example.com") is not None
    drain(env)
    [(_envelope, msg)] = sink.received
    assert "Auto-Submitted" not in msg
    token = env.services.tokens.verify(msg["Message-ID"])
    assert token == Token(1, env.services.tokens.agent_key("alice@example.com"))


def test_backoff_grows_exponentially(env: Env) -> None:
    env = env.relay_to(free_port()).outbound(retry_base_seconds=100.0)
    queue(env)
    drain(env)
    [row] = outbox(env)
    delay = (row.next_attempt_at - row.created_at).total_seconds()
    assert 100 <= delay <= 115


def test_maildir_resend_after_crash_writes_one_file(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = queue(env)
    assert item is not None

    class Crash(Exception):
        """The daemon dies after delivering, before recording it."""

    crashing = OutboxSender(env.settings, env.factory, lease_seconds=0.05)

    def crash(*_args: object) -> None:
        raise Crash

    monkeypatch.setattr(crashing, "_finish", crash)
    with pytest.raises(Crash):
        asyncio.run(crashing.drain_once())
    maildir = env.settings.data_dir / "outbox-sent"
    assert [p.name for p in (maildir / "new").iterdir()] == [f"{item.id:010d}.postdesk.eml"]
    assert outbox(env)[0].status == "pending"
    time.sleep(0.1)  # the crashed daemon's lease runs out
    assert drain(env) == 1
    files = list((maildir / "new").iterdir())
    assert len(files) == 1 and files[0].read_bytes() == item.raw
    assert not list((maildir / "tmp").iterdir()) and (maildir / "cur").is_dir()
    assert outbox(env)[0].status == "sent"
    assert drain(env) == 0


def test_lease_stops_a_second_sender_claiming_the_same_row(env: Env) -> None:
    queue(env)
    first = OutboxSender(env.settings, env.factory)
    second = OutboxSender(env.settings, env.factory)
    due = outbox(env)[0].created_at
    claimed = first._claim(due)
    assert claimed is not None
    assert second._claim(due) is None


def test_two_senders_draining_concurrently_send_each_mail_once(env: Env, sink: SmtpSink) -> None:
    env = env.relay_to(sink.port)
    for number in range(1, 13):
        queue(env, number=number, to=f"c{number}@example.org")
    other_engine = make_engine(env.url)  # a second daemon has its own connections

    async def both() -> list[int]:
        senders = [
            OutboxSender(env.settings, env.factory),
            OutboxSender(env.settings, session_factory(other_engine)),
        ]
        return list(await asyncio.gather(*(s.drain_once() for s in senders)))

    try:
        counts = asyncio.run(both())
    finally:
        other_engine.dispose()
    assert sum(counts) == 12, counts
    ids = [msg["Message-ID"] for _envelope, msg in sink.received]
    assert len(ids) == len(set(ids)) == 12
    assert {row.status for row in outbox(env)} == {"sent"}


def test_run_wakes_on_demand_and_stops(env: Env, sink: SmtpSink) -> None:
    env = env.relay_to(sink.port)

    async def scenario() -> float:
        stop = asyncio.Event()
        sender = OutboxSender(env.settings, env.factory)
        task = asyncio.create_task(sender.run(stop))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(queue, env)
        woken = time.monotonic()
        sender.wake()
        while not sink.received:
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - woken
        stop.set()
        await asyncio.wait_for(task, timeout=2)
        return elapsed

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=10)) < 0.9


def test_run_looks_again_soon_while_mail_keeps_coming(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a round that sent mail the sender naps BUSY_POLL_SECONDS, not POLL_SECONDS: mail
    the worker commits during a burst goes out without a wake (serve has none from it)."""
    monkeypatch.setattr(sender_module, "POLL_SECONDS", 3600.0)  # an idle nap outlasts the test
    new = env.settings.data_dir / "outbox-sent" / "new"
    queue(env, number=1)
    real_finish = OutboxSender._finish

    def finish(sender: OutboxSender, *args: Any) -> object:
        claimed = real_finish(sender, *args)
        if len(list(new.iterdir())) == 1:
            queue(env, number=2)  # committed after the first round's last claim, no wake
        return claimed

    monkeypatch.setattr(OutboxSender, "_finish", finish)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(OutboxSender(env.settings, env.factory).run(stop))
        while not (new.is_dir() and len(list(new.iterdir())) == 2):
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert {row.status for row in outbox(env)} == {"sent"}


def test_the_sender_beside_a_worker_gives_up_on_a_relay_that_never_answers(env: Env) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never greets
        env = env.relay_to(silent.getsockname()[1])
        queue(env)
        sender = SenderBeside(env.settings, env.factory)
        sender.start()
        started = time.monotonic()
        sender.finish(patience=1.0)
        waited = time.monotonic() - started
    assert 1.0 <= waited < 10  # not the relay's 30 s timeout
    (row,) = outbox(env)
    assert row.status == "pending" and row.attempts == 0  # the next serve sends it
