"""SMTP group commit: messages ending while a flush runs share the next flush, each answered
250 only once durable; a failed flush answers 451 to its whole group and keeps none of it."""

from __future__ import annotations

import asyncio
import errno
import smtplib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from postdesk.daemon.config import load_settings
from postdesk.daemon.intake import spool as spool_module
from postdesk.daemon.intake.smtp import IntakeHandler, start_smtp
from postdesk.daemon.intake.spool import IncomingFile, Spool
from tests.reliability.properties import SendLog, assert_p1_to_p4
from tests.support import CUSTOMER, HELPDESK, Daemon, make_mail, wait_until, write_config

CONNECTIONS = 6


class HeldSpool(Spool):
    """A real spool whose first flush waits for ``release``: the messages whose DATA ends
    meanwhile must queue up behind it (no timing involved)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()
        self.groups: list[int] = []

    def commit_group(self, group: list[IncomingFile]) -> list[str]:
        """Record the group's size, hold the first flush, then flush for real."""
        self.groups.append(len(group))
        if len(self.groups) == 1:
            assert self.release.wait(30), "the test never released the first flush"
        return super().commit_group(group)


class Intake:
    """The SMTP listener of ``serve`` (handler, server) on its own event loop thread."""

    def __init__(self, tmp_path: Path, sqlite_url: str) -> None:
        self.settings = load_settings(str(write_config(tmp_path, sqlite_url)), environ={})
        self.spool = HeldSpool(tmp_path / "spool")
        self.spooled = 0
        self.handler = IntakeHandler(self.settings, self.spool, self._count, lambda: True)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _count(self) -> None:
        self.spooled += 1

    def __enter__(self) -> Intake:
        self.thread.start()
        start = start_smtp(self.handler, self.settings)
        self.server = asyncio.run_coroutine_threadsafe(start, self.loop).result(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _close(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        await self.loop.shutdown_default_executor()

    def send(self, number: int) -> tuple[int, bytes]:
        """One message over its own SMTP session; the reply to DATA."""
        port = self.settings.smtp.host_port[1]
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example.org")
            client.mail(CUSTOMER)
            client.rcpt(HELPDESK)
            return client.data(make_mail(message_id=f"<group-{number}@example.org>"))


@pytest.fixture
def intake(tmp_path: Path, sqlite_url: str) -> Iterator[Intake]:
    with Intake(tmp_path, sqlite_url) as running:
        yield running


def _send_held(intake: Intake) -> list[tuple[int, bytes]]:
    """Send one message, and while its flush is held, CONNECTIONS more; then release."""
    with ThreadPoolExecutor(CONNECTIONS + 1) as pool:
        first = pool.submit(intake.send, 0)
        wait_until(lambda: intake.spool.groups == [1], what="the first flush started")
        rest = [pool.submit(intake.send, n) for n in range(1, CONNECTIONS + 1)]
        wait_until(lambda: intake.handler.group.waiting == CONNECTIONS, what="all DATA ended")
        assert not first.done() and not any(reply.done() for reply in rest), "no 250 yet"
        intake.spool.release.set()
        return [first.result(30), *(reply.result(30) for reply in rest)]


def test_messages_ending_during_a_flush_share_the_next_one(intake: Intake) -> None:
    replies = _send_held(intake)
    assert [code for code, _text in replies] == [250] * (CONNECTIONS + 1)
    assert intake.spool.groups == [1, CONNECTIONS], "one flush for the whole group"
    assert intake.handler.group.flushes == 2
    assert intake.handler.accepted == intake.spooled == CONNECTIONS + 1
    queued = {text.rsplit(b" ", 1)[1].decode() for _code, text in replies}
    assert list(intake.spool.tmp.iterdir()) == []
    ids = set()
    while (entry := intake.spool.claim()) is not None:
        assert entry.spool_id in queued and entry.envelope.rcpt_tos == (HELPDESK,)
        ids.add(entry.raw.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0])
    assert ids == {f"<group-{n}@example.org>".encode() for n in range(CONNECTIONS + 1)}


def test_a_failed_flush_answers_451_to_its_whole_group_and_keeps_none_of_it(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync_dir(folder: Path) -> None:  # after the group's renames into new/
        raise OSError(errno.EIO, "injected I/O error")

    intake.spool.release.set()
    assert intake.send(0)[0] == 250  # the held first flush, alone, before the fault
    intake.spool.groups.clear()
    intake.spool.release.clear()
    monkeypatch.setattr(spool_module, "fsync_dir", broken_fsync_dir)
    replies = _send_held(intake)
    assert [code for code, _text in replies] == [451] * (CONNECTIONS + 1)
    assert all(text.startswith(b"4.3.0") for _code, text in replies)
    assert intake.spool.groups == [1, CONNECTIONS]
    assert list(intake.spool.tmp.iterdir()) == []
    assert len(list(intake.spool.new.iterdir())) == 1, "only the message answered 250"
    assert intake.handler.accepted == intake.spooled == 1


def test_concurrent_sessions_each_message_stored_exactly_once(
    tmp_path: Path, sqlite_url: str
) -> None:
    daemon = Daemon(write_config(tmp_path, sqlite_url), tmp_path)
    daemon.start()
    try:
        per_connection = 10

        def session(connection: int) -> list[int]:
            codes = []
            with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
                client.ehlo("client.example.org")
                for n in range(per_connection):
                    sender = f"customer{connection}-{n}@example.org"  # each a new ticket
                    client.mail(sender)
                    client.rcpt(HELPDESK)
                    mail = make_mail(
                        sender=sender, message_id=f"<conc-{connection}-{n}@example.org>"
                    )
                    codes.append(client.data(mail)[0])
            return codes

        with ThreadPoolExecutor(CONNECTIONS) as pool:
            codes = [c for each in pool.map(session, range(CONNECTIONS)) for c in each]
        total = CONNECTIONS * per_connection
        assert codes == [250] * total
        wait_until(lambda: len(daemon.inbound_message_ids()) >= total, timeout=120)
        wait_until(lambda: daemon.spool_files() == [], what="spool drained")
        expected = {
            f"<conc-{c}-{n}@example.org>" for c in range(CONNECTIONS) for n in range(per_connection)
        }
        stored = daemon.inbound_message_ids()
        assert sorted(stored) == sorted(expected), "each message exactly once"
        assert len(daemon.tickets()) == total
    finally:
        daemon.stop()


def test_kill_9_while_groups_are_flushed_loses_and_doubles_nothing_answered_250(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Six connections keep sending while serve is killed: every message answered 250 is
    stored once after the restart (one spooled but not yet answered may be stored too)."""
    daemon = Daemon(write_config(tmp_path, sqlite_url), tmp_path)
    daemon.start()
    log, killed = SendLog(), threading.Event()

    def client(connection: int) -> None:
        for n in range(1000):
            if killed.is_set():
                return
            log.send_new(daemon.port, f"kill-{connection}", n)

    try:
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            for connection in range(CONNECTIONS):
                pool.submit(client, connection)
            wait_until(lambda: len(log.accepted) >= 60, what="60 messages answered 250")
            daemon.kill()
            killed.set()
        daemon.start()
        figures = assert_p1_to_p4(daemon, log, timeout=120)
        assert figures["250"] >= 60 and figures["lost"] == figures["duplicates"] == 0
    finally:
        daemon.stop()
