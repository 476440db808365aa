"""Every SQLite connection of the daemon: savepoint journals in memory, a page cache for a batch."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from postdesk.daemon.store.db import make_engine, make_reader_engine


def test_sqlite_connections_journal_savepoints_in_memory_and_cache_a_whole_batch(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'postdesk.db'}"
    for engine in (make_engine(url), make_reader_engine(url)):
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA temp_store")).scalar_one() == 2, "MEMORY"
            assert connection.execute(text("PRAGMA cache_size")).scalar_one() == -8000, "8 MB"
            assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        engine.dispose()
