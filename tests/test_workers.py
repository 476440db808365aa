"""Several worker processes drain one spool on PostgreSQL; SQLite keeps one writer."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from postdesk.daemon.config import ConfigError, load_settings
from tests.agentmail import GENEROUS_LIMITS
from tests.support import Daemon, make_mail, send, wait_until, write_config


def _workers(daemon: Daemon) -> list[str]:
    """The pids of the worker processes of a running daemon."""
    assert daemon.process is not None
    pid = daemon.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.mark.postgres
def test_two_workers_on_postgresql_never_process_one_message_twice(
    tmp_path: Path, postgres_url: str
) -> None:
    extra = "[processing]\nworkers = 2\nbatch_size = 5\n"
    daemon = Daemon(write_config(tmp_path, postgres_url, extra=extra), tmp_path, GENEROUS_LIMITS)
    daemon.start()
    try:
        assert len(wait_until(lambda: len(_workers(daemon)) == 2 and _workers(daemon))) == 2
        mails = [  # from 60 customers: one sender's flood of new tickets is capped
            make_mail(
                subject=f"parallel {n}",
                message_id=f"<p{n}@example.org>",
                sender=f"customer{n}@example.org",
            )
            for n in range(60)
        ]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda raw: send(daemon.port, raw)[0], mails))
        assert codes == [250] * 60
        wait_until(lambda: len(daemon.tickets()) == 60, timeout=120, what="60 tickets")
        ids = daemon.inbound_message_ids()
        assert sorted(ids) == sorted(f"<p{n}@example.org>" for n in range(60))
        acks = [row for row in daemon.outbox() if row.kind == "acknowledgement"]
        assert len(acks) == 60 and len({row.ticket_id for row in acks}) == 60
        assert daemon.spool_files() == []
        assert " duplicate " not in daemon.log() and " retry" not in daemon.log()
    finally:
        daemon.stop()


def test_more_than_one_worker_on_sqlite_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite:///x.db", extra="[processing]\nworkers = 2\n")
    with pytest.raises(ConfigError, match=r"processing\.workers: more than one worker needs"):
        load_settings(str(config), environ={})
    zero = write_config(tmp_path, "sqlite:///x.db", extra="[processing]\nworkers = 0\n")
    with pytest.raises(ConfigError, match=r"processing\.workers"):
        load_settings(str(zero), environ={})
