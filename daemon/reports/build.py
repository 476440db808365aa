"""Build a whole report: every section's figures for one window, read in one snapshot.

A section is a module with ``compute(conn, window) -> dict``; :data:`SECTIONS` lists them in
the order they are shown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection

from postdesk.daemon.config import Settings
from postdesk.daemon.reports import backlog, business, hygiene, satisfaction, sla, speed, volume
from postdesk.daemon.reports.periods import Window, iso
from postdesk.daemon.sla.calendar import Calendar

SCHEMA_VERSION = 1
Section = Callable[[Connection, Window], dict[str, Any]]
SECTIONS: tuple[tuple[str, Section], ...] = (
    ("volume", volume.compute),
    ("speed", speed.compute),
    ("sla", sla.compute),
    ("satisfaction", satisfaction.compute),
    ("backlog", backlog.compute),
    ("spam", hygiene.compute),
)


def build_report(
    engine: Engine,
    window: Window,
    title: str,
    now: datetime,
    calendars: Mapping[str, Calendar] | None = None,
    channels: Sequence[str] = (),
) -> dict[str, Any]:
    """Every section of the report for ``window`` (the JSON schema of docs/reports.md).

    ``calendars`` (policy name to SLA calendar) gives the business-time figures of ``sla``;
    ``channels`` are listed in ``volume.by_channel`` even when nothing came in through them.
    """
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "title": title,
        "generated_at": iso(now),
        "window": window.describe(),
    }
    with snapshot(engine) as conn:
        for name, compute in SECTIONS:
            report[name] = compute(conn, window)
        report["sla"]["business_time"] = business.compute(conn, window, calendars or {})
    by_channel = {channel: 0 for channel in channels} | report["volume"]["by_channel"]
    report["volume"]["by_channel"] = dict(sorted(by_channel.items()))
    return report


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection seeing one consistent state of the database, rolled back at the end.

    The report writes nothing.
    SQLite: a deferred transaction on a connection of its own, so the report never takes the
    write lock the daemon's engine takes at BEGIN (WAL readers do not block writers).
    PostgreSQL: a REPEATABLE READ transaction.
    """
    if engine.dialect.name != "sqlite":
        with engine.connect() as conn:
            yield from _rolled_back(conn.execution_options(isolation_level="REPEATABLE READ"))
        return
    reader = create_engine(engine.url, connect_args={"timeout": 30})
    event.listen(reader, "connect", _sqlite_deferred)
    event.listen(reader, "begin", lambda c: c.exec_driver_sql("BEGIN"))
    try:
        with reader.connect() as conn:
            yield from _rolled_back(conn)
    finally:
        reader.dispose()


def _rolled_back(conn: Connection) -> Iterator[Connection]:
    transaction = conn.begin()
    try:
        yield conn
    finally:
        transaction.rollback()


def _sqlite_deferred(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA temp_store=MEMORY")
    dbapi_connection.execute("PRAGMA cache_size=-65536")
    dbapi_connection.execute("PRAGMA mmap_size=1073741824")


def mailboxes(settings: Settings) -> list[str]:
    """The channel name of every configured IMAP mailbox (``imap:<name>``)."""
    return [f"imap:{mailbox.name}" for mailbox in settings.imap]
