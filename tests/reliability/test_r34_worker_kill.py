"""R-34 (and R-03 for the worker alone): kill -9 of the worker process, not of ``serve``.

The supervisor requeues the dead worker's claims when it restarts the worker, counting the
attempt, so nothing waits for a restart of ``serve`` and a message that kills the worker is
quarantined after the third time.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.reliability.procs import running_daemon, worker_pid
from tests.reliability.properties import SendLog, assert_p1_to_p4, scaled
from tests.support import wait_until


def test_r34_message_that_kills_the_worker_is_quarantined_after_three(
    tmp_path: Path, database_url: str
) -> None:
    with running_daemon(tmp_path, database_url, faults=True) as daemon:
        log = SendLog()
        assert log.send_new(daemon.port, "poison", 0, **{"X-Test-Fault": "kill-worker"}) == 250
        for n in range(1, 6):
            assert log.send_new(daemon.port, "fine", n) == 250
        figures = assert_p1_to_p4(daemon, log, timeout=60)
        assert figures["quarantined"] == 1 and figures["stored"] == 5, figures
        [item] = daemon.quarantined()
        assert item.attempts == 3 and "interrupted 3 times" in item.reason
        assert daemon.log().count("worker process exited with 137") == 3


def test_r34_random_worker_kills_under_load_lose_and_duplicate_nothing(
    tmp_path: Path, database_url: str
) -> None:
    total, kills = scaled(150), scaled(4)
    with running_daemon(tmp_path, database_url) as daemon:
        log = SendLog()
        done = threading.Event()

        def killer() -> None:
            rng = random.Random(34)
            for _ in range(kills):
                time.sleep(rng.uniform(0.3, 1.5))
                pid = wait_until(lambda: worker_pid(daemon), what="a worker to kill")
                os.kill(pid, signal.SIGKILL)
                if done.is_set():
                    break

        chaos = threading.Thread(target=killer)
        chaos.start()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: log.send_new(daemon.port, "load", n), range(total)))
        done.set()
        chaos.join()
        started = time.monotonic()
        figures = assert_p1_to_p4(daemon, log, timeout=120)
        print(
            f"R-34 figures: {figures}, kills={kills}, settled in {time.monotonic() - started:.1f}s"
        )
        assert figures["stored"] == total
        assert "interrupted by the last shutdown" not in daemon.log(), "serve never restarted"
