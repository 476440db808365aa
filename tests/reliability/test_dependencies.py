"""Dependency outages and slowness (RELIABILITY §D) beyond R-27 (test_r27_outage.py) and R-29
(test_r29_bouncing.py): a missing or corrupt classifier (R-31) and a slow database (R-35)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.reliability.procs import running_daemon
from tests.reliability.properties import SendLog, assert_p1_to_p4, scaled
from tests.reliability.slowrelay import SlowRelay


def test_r31_corrupt_classifier_models_lose_and_reject_nothing(
    tmp_path: Path, sqlite_url: str
) -> None:
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    for kind in ("spam", "category"):
        (models / f"{kind}.skops").write_bytes(b"PK\x03\x04 not a model at all")
    with running_daemon(tmp_path, sqlite_url) as daemon:
        log = SendLog()
        for n in range(3):
            assert log.send_new(daemon.port, "classify", n) == 250
        figures = assert_p1_to_p4(daemon, log)
        assert figures["stored"] == 3
        for ticket in daemon.tickets():
            assert ticket["spam"] is None, "spam unknown"
            assert ticket["category"] in (None, "")
        text = daemon.log()
        assert text.count("spam model not loaded") == 1, "said once, not once a message"
        assert text.count("category model not loaded") == 1


@pytest.mark.postgres
def test_r35_slow_database_gives_backpressure_then_the_backlog_drains(
    tmp_path: Path, postgres_url: str
) -> None:
    """Every database statement waits 20 ms; mail comes faster than the worker stores it.
    The spool grows to ``smtp.spool_high_water``, then intake answers ``451 4.3.2`` (never
    5xx), and everything accepted is stored once the load stops."""
    total, high_water = scaled(80), scaled(10)
    slow = SlowRelay(5432, delay=0.02)
    slow.start()
    throttled = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{slow.port}")
    env = {"POSTDESK_SMTP_SPOOL_HIGH_WATER": str(high_water)}
    try:
        with running_daemon(tmp_path, throttled, env=env) as daemon:
            log, lock, slowest = SendLog(), threading.Lock(), [0.0]

            def one(n: int) -> int:
                started = time.monotonic()
                code = log.send_new(daemon.port, "slow", n)
                with lock:
                    slowest[0] = max(slowest[0], time.monotonic() - started)
                return code

            with ThreadPoolExecutor(4) as pool:
                codes = list(pool.map(one, range(total)))
            started = time.monotonic()
            figures = assert_p1_to_p4(daemon, log, timeout=300)
            drained = time.monotonic() - started
            busy = codes.count(451)
            print(
                f"R-35 figures: {figures}, 451 4.3.2={busy}, slowest reply={slowest[0]:.2f}s, "
                f"drained in {drained:.1f}s"
            )
            assert busy > 0, "past the high-water mark intake pushes back"
            assert set(codes) <= {250, 451}
    finally:
        slow.stop()
