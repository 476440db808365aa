"""Every SQLite connection of the daemon: savepoint journals in memory, a page cache for a batch
where it writes, SQLite's own where plugins only read."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from postdesk.daemon.store.db import make_engine, make_reader_engine


def test_sqlite_connections_journal_savepoints_in_memory_and_cache_a_whole_batch(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'postdesk.db'}"
    for engine, cache in ((make_engine(url), -8000), (make_reader_engine(url), -2000)):
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA temp_store")).scalar_one() == 2, "MEMORY"
            assert connection.execute(text("PRAGMA cache_size")).scalar_one() == cache, "KiB"
            assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        engine.dispose()


def test_the_plugins_of_a_process_share_one_reader_engine_per_database(tmp_path: Path) -> None:
    """Each reader connection keeps its own page cache: the CRM, the webhook deliveries and
    the event journal read through one pool, not one pool each."""
    url = f"sqlite:///{tmp_path / 'postdesk.db'}"
    assert make_reader_engine(url) is make_reader_engine(url)
    assert make_reader_engine(url) is not make_reader_engine(f"sqlite:///{tmp_path / 'other.db'}")
