"""A writer waiting for SQLite's one write lock (store.db): it takes the lock as soon as it is
free, and still gives up with "database is locked" after the busy timeout."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from postdesk.daemon.store import db


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'postdesk.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE rows (n INTEGER)"))
    yield engine
    engine.dispose()


def _hold_lock(engine: Engine, seconds: float) -> tuple[threading.Thread, list[float]]:
    """Another writer (a plain sqlite3 connection) takes the write lock now and commits after
    ``seconds``, in a thread; the list gets the moment it let go."""
    holder = sqlite3.connect(
        str(engine.url.database), isolation_level=None, check_same_thread=False
    )
    holder.execute("BEGIN IMMEDIATE")
    released: list[float] = []

    def release() -> None:
        time.sleep(seconds)
        released.append(time.monotonic())
        holder.execute("COMMIT")
        holder.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread, released


def test_a_waiting_writer_takes_the_lock_as_soon_as_it_is_free(engine: Engine) -> None:
    """Held for 180 ms: SQLite's own busy handler, sleeping 1, 2, 5, 10, 15, 20, 25, 25, 25,
    50, 50 ms between tries, tries at 178 ms and then not before 228 ms, 48 ms after the lock
    is free. The writer tries at most 2 ms apart instead."""
    thread, released = _hold_lock(engine, 0.18)
    with engine.begin() as connection:
        taken = time.monotonic()
        connection.execute(text("INSERT INTO rows VALUES (1)"))
        timeout = connection.execute(text("PRAGMA busy_timeout")).scalar_one()
    thread.join()
    assert 0 <= taken - released[0] < 0.040, "taken within a few ms of its release"
    assert timeout == db.SQLITE_BUSY_TIMEOUT_MS, "the connection's own timeout is back"


def test_a_long_wait_tries_less_often(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pauses between tries grow from half a millisecond to the longest pause and stay
    there: a writer waiting through a burst wakes 500 times a second, not 2,000."""
    pauses: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if threading.current_thread() is threading.main_thread():  # the waiting writer's
            pauses.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(db.time, "sleep", sleep)
    thread, _released = _hold_lock(engine, 0.3)  # long enough for a busy machine to get here
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO rows VALUES (1)"))
    thread.join()
    assert pauses, "it waited"
    assert pauses[0] == db.SQLITE_LOCK_POLL_SECONDS
    assert pauses == sorted(pauses), "never shorter again while it waits"
    assert max(pauses) == db.SQLITE_LOCK_POLL_LONGEST
    assert sum(pause < db.SQLITE_LOCK_POLL_LONGEST for pause in pauses) <= 4, "a few ms to grow"


def test_a_writer_gives_up_after_the_busy_timeout(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 200)
    thread, _released = _hold_lock(engine, 1.0)
    started = time.monotonic()
    with pytest.raises(OperationalError, match="database is locked"), engine.begin():
        pass
    assert 0.2 <= time.monotonic() - started < 0.9
    thread.join()
    with engine.begin() as connection:  # free again: the next transaction goes through
        connection.execute(text("INSERT INTO rows VALUES (2)"))
        assert connection.execute(text("SELECT n FROM rows")).scalars().all() == [2]
