"""SMTP intake against the real daemon: reply codes, bad input, crashes, outages, shutdown."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import smtplib
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.relay import TcpRelay
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


def test_unknown_recipient_is_refused_at_rcpt(daemon: Daemon) -> None:
    code, reply = send(daemon.port, make_mail(to="nobody@example.com"), to="nobody@example.com")
    assert code == 550 and reply.startswith(b"5.1.1")
    assert daemon.spool_files() == []


def test_oversize_is_refused_by_size_parameter_and_by_data(daemon: Daemon) -> None:
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


def test_long_lines_are_accepted_and_kept(daemon: Daemon) -> None:
    body = "A" * 100_000 + "\n"
    assert send(daemon.port, make_mail(body=body))[0] == 250
    ticket = wait_until(lambda: daemon.tickets(), what="ticket")[0]
    assert "A" * 100_000 in ticket["messages"][0]["text"]


def test_smtp_smuggling_yields_exactly_one_message(daemon: Daemon) -> None:
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


def test_spool_failure_answers_451_and_keeps_nothing_half_done(daemon: Daemon) -> None:
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


def test_kill_9_after_the_last_250_loses_and_duplicates_nothing(
    tmp_path: Path, database_url: str, sink: SmtpSink
) -> None:
    config = write_config(tmp_path, database_url, relay=f"smtp://127.0.0.1:{sink.port}")
    daemon = Daemon(config, tmp_path)
    daemon.start()
    customers = {f"<durable-{n}@example.org>": f"customer{n}@example.org" for n in range(120)}

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
        wait_until(
            lambda: len(daemon.inbound_message_ids()) >= len(ids), timeout=60, what="all stored"
        )
        assert sorted(daemon.inbound_message_ids()) == sorted(ids), "each stored exactly once"
        assert len(daemon.tickets()) == len(ids)
        wait_until(lambda: daemon.spool_files() == [], what="spool empty")
        wait_until(lambda: len(sink.received) >= len(ids), timeout=60, what="acknowledgements")
        acked = [msg["In-Reply-To"] for _envelope, msg in sink.received]
        assert set(acked) == set(ids), "every ticket acknowledged"
        assert len(acked) <= len(ids) + 1, "at most one duplicate, for the one kill"
    finally:
        daemon.stop()


@pytest.mark.postgres
def test_database_outage_answers_451_then_recovers_without_losing_mail(
    tmp_path: Path, postgres_url: str, sink: SmtpSink
) -> None:
    proxy = TcpRelay(5432)
    proxy.start()
    proxied = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    daemon = Daemon(
        write_config(tmp_path, proxied, relay=f"smtp://127.0.0.1:{sink.port}"), tmp_path
    )
    daemon.start()
    try:
        proxy.pause()  # the database disappears: open connections are cut, new ones refused
        assert send(daemon.port, make_mail(message_id="<during@example.org>"))[0] == 250
        wait_until(lambda: "database unavailable" in daemon.log(), what="worker notices")
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
            client.ehlo("client.example.org")
            code, reply = client.mail(CUSTOMER)
        assert (code, reply[:5]) == (451, b"4.3.0")
        assert daemon.spool_files() != [], "the accepted message waits in the spool"
        proxy.resume()
        wait_until(
            lambda: daemon.inbound_message_ids() == ["<during@example.org>"],
            timeout=60,
            what="spooled mail processed after the outage",
        )
        assert send(daemon.port, make_mail(message_id="<after@example.org>"))[0] == 250
        wait_until(lambda: len(daemon.inbound_message_ids()) == 2, what="intake open again")
    finally:
        daemon.stop()
        proxy.stop()


def test_sigterm_refuses_new_mail_and_exits_cleanly(daemon: Daemon) -> None:
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


def test_client_disconnect_mid_data_leaves_nothing(daemon: Daemon) -> None:
    for _ in range(50):
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as raw:
            reader = raw.makefile("rb")
            reader.readline()
            raw.sendall(
                b"HELO x\r\nMAIL FROM:<carol@example.org>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"
            )
            for _reply in range(4):
                reader.readline()
            raw.sendall(b"Subject: half\r\n\r\nhalf a message")
    assert send(daemon.port, make_mail(subject="whole"))[0] == 250
    ticket = wait_until(lambda: daemon.tickets(), what="the whole message")[0]
    assert ticket["subject"] == "whole" and len(daemon.tickets()) == 1
    wait_until(lambda: daemon.spool_files() == [], what="no stale spool files")


def test_too_many_recipients_and_bogus_commands_are_refused(daemon: Daemon) -> None:
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


def test_intake_refuses_when_free_disk_is_below_the_margin(tmp_path: Path, sqlite_url: str) -> None:
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


def test_hop_count_loop_is_held_without_reply(daemon: Daemon, sink: SmtpSink) -> None:
    raw = make_mail(message_id="<loop@example.org>")
    looped = (
        b"".join(
            f"Received: from hop{n}.example.net by hop{n + 1}.example.net; Mon, 1 Jan 2024 00:00:00 +0000\r\n".encode()
            for n in range(60)
        )
        + raw
    )
    assert send(daemon.port, looped)[0] == 250
    wait_until(lambda: daemon.quarantined(), what="loop held")
    assert "mail loop: 60 Received headers" in daemon.quarantined()[0].reason
    assert daemon.tickets() == [] and sink.received == []


def test_missing_message_id_is_generated_and_still_deduplicated(daemon: Daemon) -> None:
    raw = b"From: carol@example.org\r\nTo: support@example.com\r\nSubject: no id\r\n\r\nhello\r\n"
    assert send(daemon.port, raw)[0] == 250
    assert send(daemon.port, raw)[0] == 250
    wait_until(lambda: "duplicate" in daemon.log(), what="second delivery recognised")
    (message_id,) = daemon.inbound_message_ids()
    assert message_id.endswith("@generated.postdesk>")


def _worker_pid(daemon: Daemon) -> int | None:
    """The worker process started by ``serve`` (not multiprocessing's resource tracker)."""
    assert daemon.process is not None
    pid = daemon.process.pid
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        with contextlib.suppress(FileNotFoundError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_worker_process_is_supervised_yields_to_intake_and_dies_with_serve(
    tmp_path: Path, sqlite_url: str
) -> None:
    daemon = Daemon(write_config(tmp_path, sqlite_url), tmp_path)
    daemon.start()
    try:
        first = wait_until(lambda: _worker_pid(daemon), what="worker process")
        wait_until(  # processing yields the CPU to intake
            lambda: os.getpriority(os.PRIO_PROCESS, first) == 10, what="worker niceness 10"
        )
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: "worker process exited" in daemon.log(), what="the death noticed")
        second = wait_until(
            lambda: _worker_pid(daemon) not in (None, first) and _worker_pid(daemon)
        )
        assert send(daemon.port, make_mail(message_id="<after-restart@example.org>"))[0] == 250
        wait_until(lambda: daemon.inbound_message_ids() == ["<after-restart@example.org>"])
        assert "mail.log" not in daemon.log(), "aiosmtpd's protocol chatter only with --debug"
        daemon.kill()
        wait_until(lambda: not _alive(second), timeout=10, what="the worker to die with serve")
    finally:
        daemon.stop()
