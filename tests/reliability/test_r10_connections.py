"""R-10 (a): a cap on concurrent SMTP sessions; beyond it ``421 4.7.0`` and close, and a place
freed is usable again at once."""

from __future__ import annotations

import contextlib
import smtplib
import socket
from pathlib import Path

from tests.reliability.procs import running_daemon
from tests.reliability.properties import SendLog, assert_p1_to_p4
from tests.support import wait_until

CAP = 5


def _greeting(port: int) -> tuple[socket.socket, bytes]:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    return conn, conn.recv(512)


def _admitted(port: int) -> bool:
    conn, greeting = _greeting(port)
    conn.close()
    return greeting.startswith(b"220 ")


def test_r10_connections_beyond_the_cap_get_421_and_a_freed_place_serves_mail(
    tmp_path: Path, sqlite_url: str
) -> None:
    env = {"POSTDESK_SMTP_MAX_CONNECTIONS": str(CAP)}
    with running_daemon(tmp_path, sqlite_url, env=env) as daemon, contextlib.ExitStack() as stack:
        held = []
        for _ in range(CAP):
            conn, greeting = _greeting(daemon.port)
            stack.callback(conn.close)
            assert greeting.startswith(b"220 "), greeting
            held.append(conn)
        for _ in range(3):
            conn, greeting = _greeting(daemon.port)
            with conn:
                assert greeting.startswith(b"421 4.7.0"), greeting
                assert conn.recv(512) == b"", "the refused connection is closed"
        try:
            smtplib.SMTP("127.0.0.1", daemon.port, timeout=10)
            raise AssertionError("a session beyond the cap was admitted")
        except smtplib.SMTPConnectError as error:
            assert error.smtp_code == 421

        held.pop().close()
        wait_until(lambda: _admitted(daemon.port), what="the freed place admits a session")
        log = SendLog()
        for n in range(3):  # sessions one after another: each frees its place when it ends
            assert log.send_new(daemon.port, "after-cap", n) == 250
        assert_p1_to_p4(daemon, log)
        assert daemon.log().count("refusing new ones with 421") == 1, "one warning, not one each"
