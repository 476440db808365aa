"""R-27 and the recovery lag: PostgreSQL cut (behind a loopback relay) while mail keeps coming.

Intake answers 451 while the database is down (never 5xx), nothing accepted is lost, the
worker probes the database on a short fixed interval so mail flows within a few seconds of its
return, and the log says "unavailable" and "available again" once each instead of once a try.
"""

from __future__ import annotations

import smtplib
import threading
import time
from pathlib import Path

import pytest

from tests.relay import TcpRelay
from tests.reliability.procs import running_daemon
from tests.reliability.properties import SendLog, assert_p1_to_p4, scaled
from tests.support import CUSTOMER, Daemon, SmtpSink, wait_until, write_config

RECOVERY_SECONDS = 5.0


def _mail_accepted(port: int) -> bool:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("probe.example.org")
        code, _reply = client.mail(CUSTOMER)
        return code == 250


@pytest.mark.postgres
def test_r27_database_outage_under_load_then_mail_flows_within_seconds(
    tmp_path: Path, postgres_url: str
) -> None:
    outage = scaled(20)
    proxy = TcpRelay(5432)
    proxy.start()
    proxied = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    try:
        with running_daemon(tmp_path, proxied) as daemon:
            log = SendLog()
            stop = threading.Event()

            def load() -> None:  # about 10 messages a second, each in its own session
                n = 0
                while not stop.is_set():
                    log.send_new(daemon.port, "outage", n)
                    n += 1
                    time.sleep(0.1)

            client = threading.Thread(target=load)
            client.start()
            time.sleep(3)
            proxy.pause()
            time.sleep(outage)
            refused_during = log.codes.count(451)
            proxy.resume()
            back = time.monotonic()
            wait_until(lambda: _mail_accepted(daemon.port), timeout=30, what="intake open again")
            lag = time.monotonic() - back
            time.sleep(3)
            stop.set()
            client.join()
            figures = assert_p1_to_p4(daemon, log, timeout=120)
            print(
                f"R-27 figures: {figures}, outage={outage}s, 451s={refused_during}, lag={lag:.1f}s"
            )
            assert refused_during > 0, "intake told clients to retry while the database was down"
            assert lag < RECOVERY_SECONDS, f"intake reopened {lag:.1f}s after the database"
            text = daemon.log()
            assert text.count("postdesk.worker: database unavailable, deferring") == 1
            assert text.count("postdesk.worker: database available again") == 1
            assert text.count("postdesk.outbox: outbox unavailable") <= 1
            assert "outbox round failed" not in text, "no line per outbox round"
    finally:
        proxy.stop()


@pytest.mark.postgres
def test_r27_database_outage_answers_451_then_recovers_without_losing_mail(
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
        log = SendLog()
        assert log.send_new(daemon.port, "during", 0) == 250
        wait_until(lambda: "database unavailable" in daemon.log(), what="worker notices")
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
            client.ehlo("client.example.org")
            code, reply = client.mail(CUSTOMER)
        assert (code, reply[:5]) == (451, b"4.3.0")
        assert daemon.spool_files() != [], "the accepted message waits in the spool"
        proxy.resume()
        wait_until(
            lambda: daemon.inbound_message_ids() == ["<during-0@example.org>"],
            timeout=60,
            what="spooled mail processed after the outage",
        )
        assert log.send_new(daemon.port, "after", 1) == 250, "intake open again"
        print(f"R-27 (single message) figures: {assert_p1_to_p4(daemon, log)}")
    finally:
        daemon.stop()
        proxy.stop()
