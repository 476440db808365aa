"""The daemon's processes as the reliability cases see them, and a daemon with faults armed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.support import Daemon, write_config

FAULTS = Path(__file__).parent / "faults"


def worker_pid(daemon: Daemon) -> int | None:
    """The worker process started by ``serve`` (not multiprocessing's resource tracker)."""
    assert daemon.process is not None
    pid = daemon.process.pid
    with contextlib.suppress(FileNotFoundError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(FileNotFoundError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
    return None


@contextlib.contextmanager
def running_daemon(
    tmp_path: Path,
    database_url: str,
    *,
    relay: str = "",
    extra: str = "",
    faults: bool = False,
    env: dict[str, str] | None = None,
) -> Iterator[Daemon]:
    """``postdesk serve`` for one case, with the fault hooks of ``faults/`` when asked; ``env``
    overrides settings as ``POSTDESK_<SECTION>_<KEY>``."""
    env = dict(env or {})
    if faults:
        env |= {"PYTHONPATH": str(FAULTS), "POSTDESK_TEST_FAULTS": "1"}
    daemon = Daemon(write_config(tmp_path, database_url, relay=relay, extra=extra), tmp_path, env)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
