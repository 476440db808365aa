"""IMAP intake against a real Dovecot on loopback, mostly through the real daemon subprocess.

Product decision for R-16: the same mail arriving by SMTP and by IMAP is stored once; the first
channel to deliver it is the one recorded on the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from postdesk.daemon.config import ImapMailbox, Settings
from postdesk.daemon.intake import imap as intake_imap
from postdesk.daemon.intake import imap_client
from postdesk.daemon.intake.imap import (
    MailboxPoller,
    backoff_seconds,
    check_mailboxes,
)
from postdesk.daemon.intake.imap_client import ImapConnection, ImapError, MessageInfo, uid_set
from postdesk.daemon.intake.imap_state import LeaseLost, MailboxState, Watermark
from postdesk.daemon.intake.spool import Spool, SpoolEntry
from postdesk.daemon.store.db import make_engine, session_factory, upgrade_schema
from tests.conftest import fresh_postgres_database
from tests.dovecot import Dovecot, require_dovecot
from tests.support import Daemon, free_port, make_mail, wait_until, write_config

pytestmark = pytest.mark.imap


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A private Dovecot for one test."""
    require_dovecot()
    server = Dovecot()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def start_daemon(
    workdir: Path, database_url: str, imap_toml: str, max_bytes: int | None = None
) -> Daemon:
    """Start ``postdesk serve`` with one ``[[imap]]`` mailbox; outgoing mail goes to a Maildir."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir, database_url, extra=imap_toml)
    if max_bytes is not None:
        config.write_text(
            config.read_text().replace(
                "max_message_bytes = 1000000", f"max_message_bytes = {max_bytes}"
            )
        )
    daemon = Daemon(config, workdir)
    daemon.start()
    return daemon


@pytest.fixture
def run_daemon(tmp_path: Path, sqlite_url: str) -> Iterator[list[Daemon]]:
    """A list that tests append started daemons to; every one is stopped at the end."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def subjects(n: int, prefix: str = "m") -> list[bytes]:
    """``n`` distinct small mails from as many customers (one sender's flood is capped: R-42)."""
    return [
        make_mail(
            subject=f"{prefix} {i}",
            body=f"Message {prefix} {i}\n",
            sender=f"customer{i}@example.org",
        )
        for i in range(n)
    ]


def wait_inbound(daemon: Daemon, count: int, timeout: float = 60) -> list[str]:
    """Wait until ``count`` inbound messages are stored; fail when more appear."""

    def stored() -> list[str]:
        ids = daemon.inbound_message_ids()
        return ids if len(ids) >= count else []

    ids = wait_until(stored, timeout=timeout, what=f"{count} inbound messages; {daemon.log_path}")
    assert len(ids) == count, f"expected {count}, got {len(ids)}"
    return ids


def settled(daemon: Daemon, count: int, wait: float = 2.0) -> list[str]:
    """After ``count`` messages are stored, wait a little more and check no duplicate follows."""
    wait_inbound(daemon, count)
    time.sleep(wait)
    ids = daemon.inbound_message_ids()
    assert len(ids) == count == len(set(ids)), f"{len(ids)} stored, {len(set(ids))} distinct"
    assert not daemon.spool_files() or wait_until(
        lambda: not daemon.spool_files(), what="empty spool"
    )
    return ids


def test_new_mail_arrives_within_seconds_during_idle(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    run_daemon.append(daemon := start_daemon(tmp_path, sqlite_url, dovecot.toml(poll_seconds=600)))
    wait_until(lambda: "selected" in daemon.log(), what="the poller to select INBOX")
    time.sleep(0.5)
    for i in range(3):
        started = time.monotonic()
        dovecot.append(make_mail(subject=f"idle {i}"))
        wait_inbound(daemon, i + 1, timeout=10)
        assert time.monotonic() - started < 5


def test_dovecot_restart_while_the_daemon_runs(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    dovecot.append(make_mail(subject="before"))
    run_daemon.append(daemon := start_daemon(tmp_path, sqlite_url, dovecot.toml(poll_seconds=600)))
    wait_inbound(daemon, 1)
    dovecot.stop()
    wait_until(lambda: "retrying in" in daemon.log(), what="the poller to notice")
    time.sleep(2)
    dovecot.start()
    dovecot.append(make_mail(subject="after"))
    settled(daemon, 2)


def nested_mime(depth: int) -> bytes:
    """A message nested ``depth`` multiparts deep, which the parser refuses every time."""
    head = b"From: carol@example.org\r\nTo: support@example.com\r\nSubject: poison\r\nMessage-ID: <poison@example.org>\r\nMIME-Version: 1.0\r\n"
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\r\n\r\npoison\r\n" + closing


def test_move_mode_creates_the_folder_and_moves(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    dovecot.append_many(subjects(4))
    dovecot.mark_seen(1)
    run_daemon.append(
        daemon := start_daemon(tmp_path, sqlite_url, dovecot.toml(after="move", move_to="Done"))
    )
    settled(daemon, 4)
    wait_until(lambda: dovecot.count("INBOX") == 0, what="INBOX to empty")
    assert dovecot.count("Done") == 4


def test_a_failing_mailbox_does_not_stop_the_others(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    broken = dovecot.toml(name="broken", port=free_port())
    run_daemon.append(daemon := start_daemon(tmp_path, sqlite_url, broken + dovecot.toml()))
    dovecot.append_many(subjects(3))
    settled(daemon, 3)
    assert "mailbox broken: ImapError" in daemon.log()


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_second_daemon_takes_over_the_mailbox_of_a_killed_one(
    tmp_path: Path, postgres_server: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    database = contextlib.contextmanager(fresh_postgres_database)(postgres_server)
    with database as url:
        run_daemon.append(first := start_daemon(tmp_path / "a", url, dovecot.toml()))
        wait_until(lambda: "selected" in first.log(), what="the first daemon to take the lease")
        run_daemon.append(second := start_daemon(tmp_path / "b", url, dovecot.toml()))
        wait_until(lambda: "standing by" in second.log(), what="the second daemon to stand by")
        dovecot.append_many(subjects(10, "one"))
        settled(first, 10)
        first.kill()
        dovecot.append_many(subjects(10, "two"))
        settled(second, 20, wait=3)
        assert "taken over" in second.log()
        assert "selected" not in second.log().split("taken over")[0]
        for daemon in run_daemon:
            daemon.stop()  # before the database is dropped


def test_check_reports_the_folder_and_its_counts(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot
) -> None:
    dovecot.append_many(subjects(3))
    dovecot.mark_seen(1)
    config = write_config(tmp_path, sqlite_url, extra=dovecot.toml())
    result = Daemon(config, tmp_path).cli("check")
    assert "ok    imap main: support@example.com@127.0.0.1" in result.stdout
    assert "folder INBOX: 3 message(s), 2 unseen" in result.stdout
    wrong = write_config(tmp_path, sqlite_url, extra=dovecot.toml(password="wrong"))
    result = Daemon(wrong, tmp_path).cli("check", check=False)
    assert result.returncode == 1
    assert "FAIL  imap main" in result.stdout and "LOGIN" in result.stdout


def mailbox(dovecot: Dovecot, **keys: Any) -> ImapMailbox:
    """An ImapMailbox for in-process tests; ``keys`` override its settings."""
    box = ImapMailbox(
        host="127.0.0.1",
        port=dovecot.port,
        security="none",
        username=dovecot.user,
        password=dovecot.password,
    )
    return dataclasses.replace(box, **keys)


@pytest.mark.parametrize(
    ("security", "verify", "problem"),
    [
        ("tls", False, None),
        ("starttls", False, None),
        ("tls", True, "CERTIFICATE_VERIFY_FAILED"),
        ("starttls", True, "CERTIFICATE_VERIFY_FAILED"),
    ],
)
def test_tls_and_starttls(
    dovecot: Dovecot, security: str, verify: bool, problem: str | None
) -> None:
    port = dovecot.tls_port if security == "tls" else dovecot.port
    box = mailbox(dovecot, port=port, security=security, verify_tls=verify)
    [(_name, error, detail)] = check_mailboxes(Settings(imap=(box,)))
    if problem is None:
        assert error is None and "0 message(s)" in detail
    else:
        assert error is not None and problem in error


def test_password_from_environment(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTDESK_TEST_IMAP_PASSWORD", dovecot.password)
    box = mailbox(dovecot, password="", password_env="POSTDESK_TEST_IMAP_PASSWORD")
    [(_name, error, _detail)] = check_mailboxes(Settings(imap=(box,)))
    assert error is None


def test_move_without_the_move_capability(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    uids = dovecot.append_many(subjects(3))

    async def scenario() -> None:
        connection = await ImapConnection.open(mailbox(dovecot))
        try:
            monkeypatch.setattr(connection, "has", lambda capability: capability != "MOVE")
            await connection.select("INBOX")
            await connection.create("Archive")
            await connection.move(uids[:2], "Archive")
        finally:
            await connection.close()

    asyncio.run(scenario())
    assert list(dovecot.flags("INBOX")) == [uids[2]]
    assert dovecot.count("Archive") == 2


def in_process_poller(tmp_path: Path, box: ImapMailbox) -> tuple[MailboxPoller, Spool]:
    """A poller run inside the test, on SQLite, with a spool nobody drains."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    spool = Spool(tmp_path / "spool")
    return MailboxPoller(box, Settings(), session_factory(engine), spool, lambda: None, "me"), spool


@dataclasses.dataclass(frozen=True)
class Settled(SpoolEntry):
    """A spooled message settled by :func:`poll_until`: its file is gone, its bytes kept."""

    content: bytes = b""

    @property
    def raw(self) -> bytes:
        """The raw message as it was read before the file was settled."""
        return self.content


def poll_until(
    poller: MailboxPoller,
    done: Callable[[], bool],
    timeout: float = 30,
    worker: Spool | None = None,
) -> list[SpoolEntry]:
    """Run ``poller`` until ``done()``, then stop it. With ``worker`` (the poller's spool), stand
    in for the worker: settle each spooled message as if committed; return those settled."""
    settled: list[SpoolEntry] = []

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "timed out"
            while worker is not None and (entry := worker.claim()) is not None:
                fields = {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}
                settled.append(Settled(**fields, content=entry.raw))  # read, as stored
                worker.done(entry)
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    return settled


def test_lease_is_exclusive_until_it_expires(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    first = MailboxState(session_factory(engine), "main", "first")
    second = MailboxState(session_factory(engine), "main", "second")
    assert first.acquire(0.3)
    assert first.acquire(0.3), "renewing one's own lease"
    assert not second.acquire(30)
    time.sleep(0.4)
    assert second.acquire(30)
    with pytest.raises(LeaseLost):
        first.save(Watermark(7, 3))
    second.save(Watermark(7, 3))
    assert first.load() == Watermark(7, 3)
    second.release()
    assert first.acquire(30)


def test_helpers() -> None:
    assert uid_set([7, 1, 2, 3, 5]) == "1:3,5,7"
    assert all(0.5 <= backoff_seconds(1) <= 1.0 for _ in range(20))
    assert all(30 <= backoff_seconds(50) <= 60 for _ in range(20))
    infos = [MessageInfo(uid, 20 * 1024 * 1024, frozenset()) for uid in range(3)]
    assert [len(group) for group in intake_imap._rounds(infos)] == [1, 1, 1]
    small = [MessageInfo(uid, 10, frozenset()) for uid in range(120)]
    assert [len(group) for group in intake_imap._rounds(small)] == [50, 50, 20]
    records = imap_client._fetch_records(
        [
            b"1 FETCH (UID 4 BODY[] {3}",
            bytearray(b"abc"),
            b")",
            b"2 FETCH (FLAGS (\\Seen))",
            b"3 FETCH (BODY[] {2}",
            bytearray(b"xy"),
            b" UID 9)",
            b"Fetch completed",
        ]
    )
    assert records[0] == (b"1 FETCH (UID 4 BODY[] {3} )", b"abc")
    assert records[2][1] == b"xy" and b"UID 9" in records[2][0]
    with pytest.raises(ImapError):
        imap_client._expect_ok(type("R", (), {"result": "NO", "lines": [b"nope"]})(), "X")
