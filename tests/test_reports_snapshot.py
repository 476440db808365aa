"""The report's readers: several connections, one snapshot of the database."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import func, insert, select

from postdesk.daemon.reports.build import snapshot
from postdesk.daemon.store.db import make_engine, upgrade_schema
from postdesk.models.schema import Contact, utcnow


def count_contacts(conn: object) -> int:
    """Contacts as ``conn`` sees them."""
    return int(conn.execute(select(func.count()).select_from(Contact.__table__)).scalar_one())  # type: ignore[attr-defined]


def test_readers_share_one_snapshot_while_mail_is_committed(
    database_url: str, tmp_path: Path
) -> None:
    if database_url.startswith("sqlite"):
        (tmp_path / "data").mkdir(exist_ok=True)
    engine = make_engine(database_url)
    upgrade_schema(engine)
    stop = threading.Event()
    written = 0

    def writer() -> None:
        nonlocal written
        while not stop.is_set():
            with engine.begin() as conn:
                conn.execute(
                    insert(Contact.__table__),
                    {"email": f"c{written}@example.com", "created_at": utcnow()},
                )
            written += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = []
        for _ in range(30):
            with snapshot(engine, 3) as readers:
                counts = [count_contacts(conn) for conn in readers]
                stop.wait(0.01)  # commits land meanwhile; the readers must not see them
                again = [count_contacts(conn) for conn in readers]
            assert len(set(counts + again)) == 1, counts + again
            seen.append(counts[0])
    finally:
        stop.set()
        thread.join()
        engine.dispose()
    assert written > 0 and len(set(seen)) > 1  # the writer did commit between snapshots
