"""R-33: steady load without loss, sized for CI (``RELIABILITY_SCALE=10`` by hand): 20 KB
messages from distinct customers over 8 reused SMTP sessions. The DATA to 250 latency is
printed as a figure, not asserted (timings belong to bench/bench_smtp.py)."""

from __future__ import annotations

import smtplib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.reliability.procs import running_daemon
from tests.reliability.properties import SendLog, assert_p1_to_p4, scaled
from tests.support import HELPDESK, make_mail

SESSIONS = 8
BODY = ("twenty kilobytes of a perfectly ordinary customer question. " * 340)[:20_000] + "\n"


def send_load(port: int, total: int, log: SendLog, latencies: list[float]) -> None:
    """Send ``total`` 20 KB mails from distinct customers over ``SESSIONS`` reused sessions,
    recording each 250 in ``log`` and its DATA to 250 seconds in ``latencies``."""

    def session(part: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
            for n in range(part, total, SESSIONS):
                message_id, sender = f"<load-{n}@example.org>", f"customer{n}@example.org"
                raw = make_mail(f"load {n}", BODY, sender=sender, message_id=message_id)
                started = time.monotonic()
                client.sendmail(sender, [HELPDESK], raw)  # raises on anything but 250
                latencies.append(time.monotonic() - started)
                log.codes.append(250)
                log.accepted.append(message_id)

    with ThreadPoolExecutor(SESSIONS) as pool:
        list(pool.map(session, range(SESSIONS)))


def test_r33_steady_load_over_reused_sessions_loses_and_duplicates_nothing(
    tmp_path: Path, database_url: str
) -> None:
    total = scaled(200)
    with running_daemon(tmp_path, database_url) as daemon:
        log, latencies = SendLog(), []
        started = time.monotonic()
        send_load(daemon.port, total, log, latencies)
        sent_in = time.monotonic() - started
        figures = assert_p1_to_p4(daemon, log, timeout=scaled(300))
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(
            f"R-33 figures: {figures}, sent in {sent_in:.1f}s, drained "
            f"{time.monotonic() - started - sent_in:.1f}s later, DATA->250 p99 {p99 * 1000:.0f} ms"
        )
        assert figures["stored"] == total
