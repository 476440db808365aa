"""IMAP across daemons against a real Dovecot (issue 13, item 9; R-19, R-24, R-34 for IMAP).

The server side (flag or move, and the watermark) moves only once a message is settled in the
database, so the next lease holder re-fetches whatever a killed daemon had only spooled; a
daemon restarted after kill -9 takes back its own lease at once; a poison message is flagged
apart and logged with its Message-ID.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from pathlib import Path

import pytest

from postdesk.daemon.intake.imap import FLAG_QUARANTINED, FLAG_SPOOLED
from tests.conftest import fresh_postgres_database
from tests.dovecot import Dovecot
from tests.reliability.properties import scaled
from tests.support import Daemon, wait_until
from tests.test_imap import dovecot as dovecot  # the fixture, shared
from tests.test_imap import nested_mime, start_daemon, subjects

pytestmark = pytest.mark.imap


def _ids(daemon: Daemon) -> Counter[str]:
    return Counter(daemon.inbound_message_ids())


@pytest.mark.timeout(600)
def test_r34_imap_kill_of_the_lease_holder_mid_backlog_loses_nothing(
    tmp_path: Path, postgres_server: str, dovecot: Dovecot
) -> None:
    total = scaled(120)
    database = contextlib.contextmanager(fresh_postgres_database)(postgres_server)
    with database as url:
        first = start_daemon(tmp_path / "a", url, dovecot.toml(batch_size=20))
        second: Daemon | None = None
        try:
            wait_until(lambda: "selected" in first.log(), what="the first daemon's lease")
            second = start_daemon(tmp_path / "b", url, dovecot.toml(batch_size=20))
            wait_until(lambda: "standing by" in second.log(), what="the second stands by")
            dovecot.append_many(subjects(total, "backlog"))
            wait_until(lambda: sum(_ids(first).values()) >= total // 4, timeout=200)
            first.kill()  # its local spool holds what it fetched but had not stored
            started = time.monotonic()
            wait_until(lambda: len(_ids(second)) >= total, timeout=400, what=f"{total} stored")
            lag = time.monotonic() - started
            stored = _ids(second)
            assert len(stored) == total and max(stored.values()) == 1, "P1 and P2"
            flags = dovecot.flags()
            wait_until(lambda: all(FLAG_SPOOLED in f for f in dovecot.flags().values()))
            print(
                f"IMAP kill figures: fetched={total} stored={len(stored)} lag={lag:.1f}s "
                f"flags={len(flags)} duplicates=0 lost=0"
            )
            assert "taken over" in second.log()
        finally:
            if second is not None:
                second.stop()
            first.stop()


def test_r24_own_dead_lease_is_taken_back_at_restart_and_poison_is_flagged_apart(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot
) -> None:
    dovecot.append_many(subjects(3, "before"))
    daemon = start_daemon(tmp_path, sqlite_url, dovecot.toml())
    try:
        wait_until(lambda: len(_ids(daemon)) == 3, what="first three")
        daemon.kill()  # its lease stays in the table for 30 s
        dovecot.append(nested_mime(1000))
        dovecot.append_many(subjects(2, "after"))
        daemon.start()
        wait_until(
            lambda: daemon.log().count("INBOX selected") == 2,
            timeout=10,
            what="its own dead lease taken back at once (it lasts 30 s)",
        )
        assert "standing by" not in daemon.log()
        wait_until(lambda: len(_ids(daemon)) == 5, timeout=60, what="two more stored")
        wait_until(daemon.quarantined, timeout=20, what="the poison quarantined")
        wait_until(lambda: FLAG_QUARANTINED in dovecot.flags()[4], what="the poison flagged")
        assert FLAG_SPOOLED not in dovecot.flags()[4]
        assert "<poison@example.org> held" in daemon.log(), "logged with its Message-ID"
        assert [item.channel for item in daemon.quarantined()] == ["imap:main"]
    finally:
        daemon.stop()
