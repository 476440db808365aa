"""R-36 (and R-04 for large messages): a large message is streamed to the spool as it arrives,
stored byte for byte with intact attachments; a cut or oversize DATA leaves nothing behind.

Memory itself is measured by ``bench/bench_memory.py``; these tests check the behaviour the
streaming must keep.
"""

from __future__ import annotations

import email.policy
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import select

from postdesk.daemon.intake.spool import IN_MEMORY, Envelope, Spool
from postdesk.daemon.store.attachments import blob_path
from postdesk.daemon.store.db import make_engine, session_factory
from postdesk.daemon.store.rawfiles import message_raw
from postdesk.models.schema import Attachment, Message
from tests.support import CUSTOMER, HELPDESK, Daemon, SmtpSink, send, wait_until, write_config

LIMIT = 8 * IN_MEMORY  # the test daemon's smtp.max_message_bytes


def configure(tmp_path: Path, database_url: str, sink: SmtpSink, smtp: str = "") -> Daemon:
    """A daemon (not started) with room for messages several times larger than ``IN_MEMORY``,
    plus the ``smtp`` settings lines."""
    config = write_config(tmp_path, database_url, relay=f"smtp://127.0.0.1:{sink.port}")
    text = config.read_text()
    assert "max_message_bytes = 1000000\n" in text
    config.write_text(
        text.replace("max_message_bytes = 1000000\n", f"max_message_bytes = {LIMIT}\n{smtp}")
    )
    return Daemon(config, tmp_path)


@pytest.fixture
def big_daemon(tmp_path: Path, database_url: str, sink: SmtpSink) -> Iterator[Daemon]:
    """The real daemon, started, with room for large messages."""
    daemon = configure(tmp_path, database_url, sink)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def large_mail(files: list[bytes]) -> bytes:
    """A CRLF mail carrying ``files``, whose text has lines that need dot-stuffing."""
    mail = EmailMessage()
    mail["From"] = CUSTOMER
    mail["To"] = HELPDESK
    mail["Subject"] = "Large attachments"
    mail["Message-ID"] = "<r36-large@example.org>"
    mail.set_content(".a line starting with a dot\n..and one with two\n.\nend\n")
    for n, data in enumerate(files):
        mail.add_attachment(
            data, maintype="application", subtype="octet-stream", filename=f"part{n}.bin"
        )
    return mail.as_bytes(policy=email.policy.SMTP)


def open_data(port: int) -> tuple[socket.socket, IO[bytes]]:
    """A raw SMTP session up to the 354 reply to DATA; returns the socket and its reader."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    reader = raw.makefile("rb")
    reader.readline()
    for command in (
        b"HELO x\r\n",
        f"MAIL FROM:<{CUSTOMER}>\r\n".encode(),
        f"RCPT TO:<{HELPDESK}>\r\n".encode(),
    ):
        raw.sendall(command)
        assert reader.readline()[:1] == b"2"
    raw.sendall(b"DATA\r\n")
    assert reader.readline().startswith(b"354")
    return raw, reader


def spool_tmp(daemon: Daemon) -> list[Path]:
    """Files being written in the daemon's spool."""
    return list((daemon.settings.data_dir / "spool" / "tmp").iterdir())


def test_r36_large_message_is_stored_byte_for_byte_with_intact_attachments(
    big_daemon: Daemon,
) -> None:
    files = [os.urandom(IN_MEMORY) for _ in range(4)]
    raw = large_mail(files)
    assert 3 * IN_MEMORY < len(raw) < LIMIT
    code, reply = send(big_daemon.port, raw)
    assert code == 250, reply
    wait_until(lambda: big_daemon.inbound_message_ids(), timeout=60, what="the stored message")
    engine = make_engine(big_daemon.settings.database_url)
    try:
        with session_factory(engine)() as session:
            message = session.execute(select(Message).where(Message.direction == "in")).scalar_one()
            assert message.raw == b"" and message.raw_sha256 is not None, "a file, not the row"
            data_dir = big_daemon.settings.data_dir
            assert message_raw(data_dir, message.raw, message.raw_sha256) == raw, (
                "dot-unstuffed, byte for byte as sent"
            )
            stored = session.execute(
                select(Attachment)
                .where(Attachment.message_pk == message.id)
                .order_by(Attachment.id)
            ).scalars()
            sums = [(item.filename, item.size, item.sha256) for item in stored]
    finally:
        engine.dispose()
    expected = [
        (f"part{n}.bin", len(data), hashlib.sha256(data).hexdigest())
        for n, data in enumerate(files)
    ]
    assert sums == expected
    for _name, _size, digest in sums:
        blob = blob_path(big_daemon.settings.data_dir, digest).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == digest
    wait_until(lambda: big_daemon.spool_files() == [], what="the spool file settled")


def test_r36_r04_large_data_goes_to_disk_as_it_arrives_and_a_cut_leaves_nothing(
    big_daemon: Daemon,
) -> None:
    raw, reader = open_data(big_daemon.port)
    try:
        raw.sendall(b"Subject: cut\r\n\r\n" + (b"x" * 998 + b"\r\n") * (3 * IN_MEMORY // 1000))
        partial = wait_until(lambda: spool_tmp(big_daemon), what="a spool file during DATA")
        # Streamed, not collected: the bytes beyond the in-memory part are on disk already.
        wait_until(
            lambda: sum(path.stat().st_size for path in spool_tmp(big_daemon)) >= 2 * IN_MEMORY,
            what="the received data on disk",
        )
        assert len(partial) == 1
    finally:
        reader.close()
        raw.close()
    wait_until(lambda: big_daemon.spool_files() == [], what="the partial file removed")
    time.sleep(0.5)
    assert big_daemon.tickets() == []


def test_r36_oversize_streamed_data_is_refused_with_552_and_nothing_kept(
    big_daemon: Daemon,
) -> None:
    raw, reader = open_data(big_daemon.port)
    try:
        line = b"y" * 998 + b"\r\n"
        raw.sendall(b"Subject: too big\r\n\r\n" + line * (LIMIT // len(line) + 10) + b".\r\n")
        reply = reader.readline()
        assert reply.startswith(b"552 5.3.4"), reply
        assert spool_tmp(big_daemon) == []
        raw.sendall(b"NOOP\r\n")
        assert reader.readline().startswith(b"250"), "the session goes on"
    finally:
        reader.close()
        raw.close()
    assert big_daemon.spool_files() == []
    assert big_daemon.tickets() == []


def test_r04_incoming_file_is_removed_on_discard_and_stale_ones_at_recovery(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    envelope = Envelope(CUSTOMER, (HELPDESK,), "smtp", 1.0)
    small = spool.open(envelope)
    small.write(b"Subject: small\r\n\r\nkept in memory\r\n")
    assert list(spool.tmp.iterdir()) == [], "a small message never touches tmp/"
    small.discard()
    large = spool.open(envelope)
    for _ in range(3):
        large.write(b"z" * IN_MEMORY)
    assert [path.name for path in spool.tmp.iterdir()] == [large.name]
    large.discard()
    assert list(spool.tmp.iterdir()) == []
    assert list(spool.new.iterdir()) == []
    stale = spool.open(envelope)
    stale.write(b"z" * (2 * IN_MEMORY))  # a crash now would leave this file behind
    assert list(Spool(tmp_path).tmp.iterdir()), "still there until recovery"
    Spool(tmp_path).recover()
    assert list(spool.tmp.iterdir()) == []
    stale.discard()  # nothing left to remove: no error


def test_r36_committed_large_message_reads_back_whole(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    envelope = Envelope(CUSTOMER, (HELPDESK,), "smtp", 1.0)
    body = os.urandom(3 * IN_MEMORY + 17)
    incoming = spool.open(envelope)
    for start in range(0, len(body), 4096):
        incoming.write(body[start : start + 4096])
    spool_id = incoming.commit()
    incoming.discard()  # after commit: a no-op
    assert list(spool.tmp.iterdir()) == []
    entry = spool.claim()
    assert entry is not None and entry.spool_id == spool_id
    assert entry.raw == body and entry.envelope == envelope


def test_r36_large_data_trickling_in_longer_than_the_idle_timeout_is_accepted(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    daemon = configure(tmp_path, sqlite_url, sink, smtp="idle_timeout = 2\n")
    daemon.start()
    try:
        raw, reader = open_data(daemon.port)
        try:
            raw.sendall(f"From: {CUSTOMER}\r\nTo: {HELPDESK}\r\nSubject: slow\r\n\r\n".encode())
            started = time.monotonic()
            for _piece in range(10):  # 2.5 MB over about 5 s: longer than the idle timeout
                raw.sendall((b"s" * 998 + b"\r\n") * 250)
                time.sleep(0.5)
            raw.sendall(b".\r\n")
            reply = reader.readline()
            assert time.monotonic() - started > 2 * daemon.settings.smtp.idle_timeout
            assert reply.startswith(b"250"), reply
        finally:
            reader.close()
            raw.close()
        wait_until(lambda: daemon.tickets(), timeout=60, what="the slow message stored")
    finally:
        daemon.stop()
