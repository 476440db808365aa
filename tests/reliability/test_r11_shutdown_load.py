"""R-11 under load: SIGTERM while several SMTP clients are sending.

New sessions get ``421 4.3.2``, a DATA in flight when the signal lands gets a 250 or a 4xx
(never a 5xx, never half kept), the daemon exits 0 within 30 s, and after a restart every
message that got a 250 is stored exactly once (P1-P4).
"""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from pathlib import Path

from tests.reliability.properties import SendLog, assert_p1_to_p4, scaled
from tests.support import CUSTOMER, HELPDESK, Daemon, make_mail, wait_until, write_config

CLIENTS = 6


def _reply(stream: socket.SocketIO) -> int:
    """The code of one (possibly multi-line) SMTP reply; 0 when the connection ended."""
    while True:
        line = stream.readline()
        if len(line) < 4:
            return 0
        if line[3:4] != b"-":
            return int(line[:3])


def _slow_data(port: int, log: SendLog, halfway: threading.Event, go_on: threading.Event) -> None:
    """One message whose DATA is half sent when SIGTERM lands, and finished just after."""
    message_id = "<in-flight@example.org>"
    raw = make_mail(subject="in flight", message_id=message_id, body="line\n" * 2000)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        stream = sock.makefile("rb")
        steps = [b"", b"EHLO slow.example.org\r\n", f"MAIL FROM:<{CUSTOMER}>\r\n".encode()]
        steps += [f"RCPT TO:<{HELPDESK}>\r\n".encode(), b"DATA\r\n"]
        for command in steps:
            sock.sendall(command)
            assert _reply(stream) in (220, 250, 354)
        sock.sendall(raw[: len(raw) // 2])
        halfway.set()
        go_on.wait(30)
        time.sleep(0.2)  # the daemon has begun stopping
        try:
            sock.sendall(raw[len(raw) // 2 :] + b"\r\n.\r\n")
            code = _reply(stream)
        except OSError:
            code = 0
    log.codes.append(code)
    print(f"R-11 in-flight DATA finished after SIGTERM: {code}")
    if code == 250:
        log.accepted.append(message_id)


def _probe_new_session(port: int) -> int:
    """What a new session gets at MAIL FROM: 421, or 0 when the daemon is already gone."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("late.example.org")
            return client.mail(CUSTOMER)[0]
    except (OSError, smtplib.SMTPServerDisconnected):
        return 0


def test_r11_sigterm_under_load_then_restart_loses_and_doubles_nothing(
    tmp_path: Path, database_url: str
) -> None:
    daemon = Daemon(write_config(tmp_path, database_url), tmp_path)
    daemon.start()
    log, stop = SendLog(), threading.Event()
    halfway, signalled = threading.Event(), threading.Event()

    def client(k: int) -> None:
        n = 0
        while not stop.is_set():
            if log.send_new(daemon.port, f"load{k}", n) != 250:
                time.sleep(0.05)  # as a client's retry would, a little later
            n += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    threads.append(threading.Thread(target=_slow_data, args=(daemon.port, log, halfway, signalled)))
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: len(log.accepted) >= scaled(40) and halfway.is_set(), timeout=120)
        assert daemon.process is not None
        started = time.monotonic()
        daemon.process.terminate()
        signalled.set()
        wait_until(lambda: "stopping: refusing new mail" in daemon.log(), what="shutdown begins")
        probe = _probe_new_session(daemon.port)
        assert daemon.process.wait(timeout=30) == 0
        took = time.monotonic() - started
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert took < 30, f"exit took {took:.1f} s"
    assert probe in (421, 0), f"a new session after SIGTERM got {probe}"
    assert set(log.codes) <= {250, 421, 451, 0}, f"replies seen: {sorted(set(log.codes))}"
    assert 421 in log.codes or probe == 421, "sessions during the shutdown were told 421"
    daemon.start()
    try:
        figures = assert_p1_to_p4(daemon, log)
        if "<in-flight@example.org>" not in log.accepted:  # refused: then nothing of it kept
            assert "<in-flight@example.org>" not in daemon.inbound_message_ids()
    finally:
        daemon.stop()
    refused = {code: log.codes.count(code) for code in (421, 451, 0)}
    print(f"R-11 figures: {figures}, refused {refused}, exit in {took:.1f} s, probe {probe}")
