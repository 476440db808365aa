"""SMTP intake durability (RELIABILITY §A, R-01 to R-12) against the real daemon: reply codes,
bad input, crashes, disk, shutdown."""

from __future__ import annotations

import contextlib
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.reliability.procs import running_daemon
from tests.reliability.properties import SendLog, assert_p1_to_p4, scaled
from tests.support import (
    CUSTOMER,
    HELPDESK,
    Daemon,
    SmtpSink,
    make_mail,
    send,
    wait_until,
    write_config,
)
from tests.test_ops_tls_logs import make_certificate, tls_config


def test_r01_spool_failure_answers_451_and_keeps_nothing_half_done(daemon: Daemon) -> None:
    tmp_dir = daemon.settings.data_dir / "spool" / "tmp"
    shutil.rmtree(tmp_dir)
    tmp_dir.write_text("not a directory: writing the spool now fails")
    try:
        code, reply = send(daemon.port, make_mail())
        assert (code, reply[:5]) == (451, b"4.3.0")
        assert b"NotADirectory" not in reply, "no exception text leaks to the client"
    finally:
        tmp_dir.unlink()
        tmp_dir.mkdir()
    assert daemon.tickets() == []
    assert send(daemon.port, make_mail())[0] == 250, "intake recovers without a restart"
    wait_until(lambda: daemon.tickets(), what="ticket after recovery")


def test_r03_kill_9_after_the_last_250_loses_and_duplicates_nothing(
    tmp_path: Path, database_url: str, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, database_url, relay=f"smtp://127.0.0.1:{sink.port}")
    daemon = Daemon(config, tmp_path)
    daemon.start()
    customers = {
        f"<durable-{n}@example.org>": f"customer{n}@example.org" for n in range(scaled(120))
    }

    def deliver(chunk: list[str]) -> list[str]:
        accepted = []
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
            for message_id in chunk:
                sender = customers[message_id]
                raw = make_mail(subject=f"case {message_id}", sender=sender, message_id=message_id)
                client.sendmail(sender, [HELPDESK], raw)
                accepted.append(message_id)
        return accepted

    ids = list(customers)
    try:
        with ThreadPoolExecutor(8) as pool:
            parts = pool.map(deliver, [ids[i::8] for i in range(8)])
            accepted = [message_id for part in parts for message_id in part]
        daemon.kill()  # right after the last 250: most messages are still only in the spool
        assert sorted(accepted) == sorted(ids)

        daemon.start()
        log = SendLog(accepted=accepted, codes=[250] * len(accepted))
        figures = assert_p1_to_p4(daemon, log, timeout=scaled(180))  # SQLite on a busy CI box
        assert sorted(daemon.inbound_message_ids()) == sorted(ids), "each stored exactly once"
        assert len(daemon.tickets()) == len(ids)
        wait_until(lambda: len(sink.received) >= len(ids), timeout=60, what="acknowledgements")
        acked = [msg["In-Reply-To"] for _envelope, msg in sink.received]
        assert set(acked) == set(ids), "every ticket acknowledged"
        assert len(acked) <= len(ids) + 1, "at most one duplicate, for the one kill"
        print(f"R-03 figures: {figures}, acknowledgements={len(acked)}")
    finally:
        daemon.stop()


def test_r04_client_disconnect_mid_data_leaves_nothing(daemon: Daemon) -> None:
    for _ in range(scaled(50)):
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as raw:
            reader = raw.makefile("rb")
            reader.readline()
            raw.sendall(
                b"HELO x\r\nMAIL FROM:<carol@example.org>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"
            )
            for _reply in range(4):
                reader.readline()
            raw.sendall(b"Subject: half\r\n\r\nhalf a message")
    log = SendLog()
    assert log.send_new(daemon.port, "whole", 0) == 250
    assert_p1_to_p4(daemon, log)  # also waits for no stale spool files
    [ticket] = daemon.tickets()
    assert ticket["subject"] == "whole 0"


def test_r05_intake_refuses_when_free_disk_is_below_the_margin(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = write_config(tmp_path, sqlite_url)
    limit = "max_message_bytes = 1000000\n"
    assert limit in config.read_text()
    # A limit of 1 PB: no disk has 1.5 times that free, so intake must refuse up front.
    config.write_text(config.read_text().replace(limit, f"max_message_bytes = {10**15}\n"))
    daemon = Daemon(config, tmp_path)
    daemon.start()
    try:
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
            client.ehlo("client.example.org")
            code, reply = client.mail(CUSTOMER)
        assert (code, reply[:5]) == (452, b"4.3.1")
    finally:
        daemon.stop()


def test_r06_oversize_is_refused_by_size_parameter_and_by_data(daemon: Daemon) -> None:
    limit = daemon.settings.smtp.max_message_bytes
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
        client.ehlo("client.example.org")
        code, reply = client.mail(CUSTOMER, options=[f"SIZE={limit + 1}"])
        assert (code, reply[:5]) == (552, b"5.3.4")
        client.rset()
        assert client.mail(CUSTOMER)[0] == 250
        assert client.rcpt(HELPDESK)[0] == 250
        big = make_mail(body="x" * 70 + "\n") + (b"y" * 76 + b"\r\n") * (limit // 78 + 1)
        code, reply = client.data(big)
        assert (code, reply[:5]) == (552, b"5.3.4")
        assert client.noop()[0] == 250, "the connection stays usable"
    assert daemon.spool_files() == []


def test_r07_long_lines_are_accepted_and_kept(daemon: Daemon) -> None:
    body = "A" * 100_000 + "\n"
    assert send(daemon.port, make_mail(body=body))[0] == 250
    ticket = wait_until(lambda: daemon.tickets(), what="ticket")[0]
    assert "A" * 100_000 in ticket["messages"][0]["text"]


def test_r08_smtp_smuggling_yields_exactly_one_message(daemon: Daemon) -> None:
    smuggled = (
        b"From: carol@example.org\r\nTo: support@example.com\r\nSubject: outer\r\n\r\nouter body\r\n"
        b"\n.\r\nMAIL FROM:<mallory@evil.test>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"
        b"From: mallory@evil.test\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n"
    )
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as raw:
        reader = raw.makefile("rb")
        reader.readline()
        for command in (
            b"EHLO x\r\n",
            b"MAIL FROM:<carol@example.org>\r\n",
            b"RCPT TO:<support@example.com>\r\n",
        ):
            raw.sendall(command)
            while reader.readline()[3:4] == b"-":
                pass
        raw.sendall(b"DATA\r\n")
        assert reader.readline().startswith(b"354")
        raw.sendall(smuggled + b".\r\n")
        assert reader.readline().startswith(b"250")
        raw.sendall(b"QUIT\r\n")
    ticket = wait_until(lambda: daemon.tickets(), what="ticket")[0]
    time.sleep(0.5)
    assert len(daemon.tickets()) == 1
    assert ticket["subject"] == "outer" and "smuggled body" in ticket["messages"][0]["text"]


def test_r10_too_many_recipients_and_bogus_commands_are_refused(daemon: Daemon) -> None:
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail(CUSTOMER)
        cap = daemon.settings.smtp.max_recipients
        codes = [client.rcpt(HELPDESK)[0] for _ in range(cap + 2)]
        assert codes[:cap] == [250] * cap
        code, reply = client.rcpt(HELPDESK)
        assert (code, reply[:5]) == (452, b"4.5.3")
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as raw:
        reader = raw.makefile("rb")
        reader.readline()
        replies = []
        raw.sendall(b"BOGUS\r\n" * 6)
        with contextlib.suppress(ConnectionResetError):
            while line := reader.readline():
                replies.append(line)
        # The server hangs up on a client that keeps talking nonsense.
        assert replies[-1].startswith(b"502 5.5.1"), replies


def test_r11_sigterm_refuses_new_mail_and_exits_cleanly(daemon: Daemon) -> None:
    send(daemon.port, make_mail())
    wait_until(lambda: daemon.tickets(), what="ticket")
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
        client.ehlo("client.example.org")
        assert daemon.process is not None
        daemon.process.terminate()
        wait_until(lambda: "stopping" in daemon.log(), what="shutdown begins")
        try:
            code, reply = client.mail(CUSTOMER)
            assert code == 421 and reply.startswith(b"4.3.2")
        except smtplib.SMTPServerDisconnected:
            pass  # the daemon was already gone: also no acceptance
    assert daemon.process.wait(timeout=30) == 0
    assert "postdesk stopped: accepted 1 message(s)" in daemon.log()


def test_r11_a_data_transfer_in_progress_at_sigterm_finishes_with_250_and_is_kept(
    daemon: Daemon,
) -> None:
    """The client holds its final dot until the daemon has begun stopping, and a while more
    (longer than an idle daemon takes to exit): the daemon waits for it, answers 250, and the
    message is stored at the next start."""
    raw = make_mail(subject="in flight at the stop", message_id="<held-dot@example.org>")
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=30) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        for command in (b"HELO client.example.org", f"MAIL FROM:<{CUSTOMER}>".encode()):
            sock.sendall(command + b"\r\n")
            assert reader.readline().startswith(b"250")
        sock.sendall(f"RCPT TO:<{HELPDESK}>\r\n".encode())
        assert reader.readline().startswith(b"250")
        sock.sendall(b"DATA\r\n")
        assert reader.readline().startswith(b"354")
        sock.sendall(raw)
        assert daemon.process is not None
        daemon.process.terminate()
        wait_until(lambda: "stopping: refusing new mail" in daemon.log(), what="the stop")
        time.sleep(6.0)  # an idle daemon that did not wait is gone after ~3 s
        assert daemon.process.poll() is None, "the daemon waits for the message in flight"
        sock.sendall(b"\r\n.\r\n")
        assert reader.readline().startswith(b"250 "), "the message that arrived is accepted"
    assert daemon.process.wait(timeout=30) == 0
    daemon.start()
    wait_until(lambda: daemon.tickets(), what="the ticket after the restart")
    assert daemon.inbound_message_ids() == ["<held-dot@example.org>"]


def test_r12_unknown_recipient_is_refused_at_rcpt(daemon: Daemon) -> None:
    code, reply = send(daemon.port, make_mail(to="nobody@example.com"), to="nobody@example.com")
    assert code == 550 and reply.startswith(b"5.1.1")
    assert daemon.spool_files() == []


def test_r02_a_bug_in_handle_data_is_451_without_its_text(tmp_path: Path, sqlite_url: str) -> None:
    with running_daemon(tmp_path, sqlite_url, faults=True) as daemon:
        log = SendLog()
        assert log.send_new(daemon.port, "bug", 0, **{"X-Test-Fault": "raise-in-data"}) == 451
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
            client.ehlo("client.example.org")
            client.mail(CUSTOMER)
            client.rcpt(HELPDESK)
            code, reply = client.data(make_mail(headers={"X-Test-Fault": "raise-in-data"}))
        assert (code, reply[:5]) == (451, b"4.3.0")
        assert b"SECRET" not in reply and b"RuntimeError" not in reply, "no exception text"
        assert "Traceback" in daemon.log() and "SECRET-INTERNAL-DETAIL" in daemon.log()
        assert log.send_new(daemon.port, "fine", 1) == 250
        assert_p1_to_p4(daemon, log)
        assert daemon.inbound_message_ids() == ["<fine-1@example.org>"]


@contextlib.contextmanager
def _tmpfs(folder: Path, size: str) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"R-05 needs a small tmpfs and this machine refuses mount: {mounted.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` until ``leave`` bytes (about) are free."""
    filler = folder / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):  # ENOSPC: full is full
        while (free := shutil.disk_usage(folder).free) > leave:
            out.write(b"\0" * min(free - leave, 1 << 20))
            out.flush()
    return filler


def test_r05_spool_on_a_full_tmpfs_refuses_then_resumes_without_restart(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    """The data dir (spool) on a 4 MB tmpfs, the database elsewhere; the limit is 1 MB."""
    data = tmp_path / "data"
    database = sqlite_url.replace(str(data), str(tmp_path / "db"))
    (tmp_path / "db").mkdir()
    with _tmpfs(data, "4m"):
        config = write_config(tmp_path, database, relay=f"smtp://127.0.0.1:{sink.port}")
        daemon = Daemon(config, tmp_path)
        daemon.start()
        try:
            log = SendLog()
            assert log.send_new(daemon.port, "roomy", 0) == 250
            filler = _fill(data, leave=1_200_000)  # below 1.5 x max_message_bytes
            with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
                client.ehlo("client.example.org")
                code, reply = client.mail(CUSTOMER)
            assert (code, reply[:5]) == (452, b"4.3.1"), "refused up front, at MAIL FROM"
            filler.unlink()
            _fill(data, leave=1_600_000)  # room at MAIL FROM ...
            with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
                client.ehlo("client.example.org")
                assert client.mail(CUSTOMER)[0] == 250
                assert client.rcpt(HELPDESK)[0] == 250
                _fill(data, leave=0)  # ... gone before DATA: the spool write fails
                code, reply = client.data(make_mail(body="z" * 300_000))
            assert code in (451, 452), "never 250 when the bytes are not on disk"
            log.codes.append(code)
            assert not list((data / "spool" / "tmp").iterdir()), "no half-written file left"
            for leftover in data.glob("filler*"):
                leftover.unlink()
            assert log.send_new(daemon.port, "after", 1) == 250, "intake resumes, no restart"
            figures = assert_p1_to_p4(daemon, log)
            print(f"R-05 figures: {figures}")
        finally:
            daemon.stop()


def test_r09_plaintext_pipelined_after_starttls_is_discarded(
    tmp_path: Path, sqlite_url: str
) -> None:
    cert, key = make_certificate(tmp_path)
    daemon = Daemon(tls_config(tmp_path, sqlite_url, cert, key), tmp_path)
    daemon.start()
    try:
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as raw:
            reader = raw.makefile("rb")
            reader.readline()
            raw.sendall(b"EHLO x\r\n")
            while reader.readline()[3:4] == b"-":
                pass
            raw.sendall(b"STARTTLS\r\nMAIL FROM:<mallory@evil.test>\r\n")  # one write
            assert reader.readline().startswith(b"220")
            context = ssl.create_default_context(cafile=str(cert))
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                secure = tls.makefile("rb")
                tls.sendall(b"EHLO x\r\n")
                first = secure.readline()
                assert first.startswith(b"250-"), f"the EHLO answer comes first, got {first!r}"
                while secure.readline()[3:4] == b"-":
                    pass
                tls.sendall(b"RCPT TO:<support@example.com>\r\n")
                assert secure.readline().startswith(b"503"), "the injected MAIL FROM was dropped"
    finally:
        daemon.stop()
