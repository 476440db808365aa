"""SMTP intake against the real daemon: reply codes, bad input, crashes, outages, shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from tests.support import (
    Daemon,
    make_mail,
    send,
    wait_until,
    write_config,
)


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
