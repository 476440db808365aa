"""Build a whole report: every section's figures for one window, read in one snapshot.

A section is a module with ``compute(conn, window) -> dict``; :data:`SECTIONS` lists them in
the order they are shown. The sections are read on :data:`READERS` connections at once, all
in the same snapshot of the database: the database does the heavy part of a report and lets
the interpreter go while it reads, so on a machine with more than one core two sections take
little longer than one.
"""

from __future__ import annotations

import functools
import queue
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection

from postdesk.daemon.config import Settings
from postdesk.daemon.reports import backlog, business, hygiene, satisfaction, sla, speed, volume
from postdesk.daemon.reports.periods import Window, iso
from postdesk.daemon.sla.calendar import Calendar

SCHEMA_VERSION = 1
READERS = 2  # connections reading sections at once
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
    sections: list[tuple[str, Section]] = [
        *SECTIONS,
        ("business_time", functools.partial(business.compute, calendars=calendars or {})),
    ]
    with snapshot(engine, READERS) as readers:
        figures = _read_sections(readers, window, sections)
    report |= {name: figures[name] for name, _ in SECTIONS}
    report["sla"]["business_time"] = figures["business_time"]
    by_channel = {channel: 0 for channel in channels} | report["volume"]["by_channel"]
    report["volume"]["by_channel"] = dict(sorted(by_channel.items()))
    return report


def _read_sections(
    readers: list[Connection], window: Window, sections: Sequence[tuple[str, Section]]
) -> dict[str, dict[str, Any]]:
    """Each section's figures, computed on whichever reader is free (one section per reader)."""
    free: queue.SimpleQueue[Connection] = queue.SimpleQueue()
    for reader in readers:
        free.put(reader)

    def read(section: Section) -> dict[str, Any]:
        conn = free.get()
        try:
            return section(conn, window)
        finally:
            free.put(conn)

    with ThreadPoolExecutor(len(readers), thread_name_prefix="report") as pool:
        results = pool.map(read, [section for _, section in sections])
        return {name: figures for (name, _), figures in zip(sections, results, strict=True)}


@contextmanager
def snapshot(engine: Engine, count: int = 1) -> Iterator[list[Connection]]:
    """``count`` connections that all see one consistent state of the database, rolled back
    at the end (the report writes nothing).

    SQLite: deferred transactions on connections of their own, so the report does not hold
    the write lock the daemon's engine takes at BEGIN (WAL readers do not block writers). To
    give several readers the same snapshot, the write lock is held only while each reader
    starts its read: no commit can fall between them. PostgreSQL: REPEATABLE READ
    transactions, the others importing the first one's exported snapshot.
    """
    with ExitStack() as stack:
        if engine.dialect.name == "sqlite":
            readers = _sqlite_readers(engine, count, stack)
        else:
            readers = _postgresql_readers(engine, count, stack)
        yield readers


def _postgresql_readers(engine: Engine, count: int, stack: ExitStack) -> list[Connection]:
    readers: list[Connection] = []
    exported = ""
    for _ in range(count):
        conn = stack.enter_context(engine.connect())
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        stack.enter_context(_rolled_back(conn))
        if exported:
            conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{exported}'")
        else:
            exported = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
        readers.append(conn)
    return readers


def _sqlite_readers(engine: Engine, count: int, stack: ExitStack) -> list[Connection]:
    reader = create_engine(
        engine.url,
        connect_args={"timeout": 30, "check_same_thread": False},  # one thread at a time
        pool_size=count,
    )
    stack.callback(reader.dispose)
    event.listen(reader, "connect", _sqlite_deferred)
    event.listen(reader, "begin", lambda c: c.exec_driver_sql("BEGIN"))
    readers = [stack.enter_context(reader.connect()) for _ in range(count)]
    gate = reader.raw_connection()  # holds the write lock while the readers start
    gate.cursor().execute("BEGIN IMMEDIATE")
    try:
        for conn in readers:
            stack.enter_context(_rolled_back(conn))
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar_one()  # starts it
    finally:
        gate.rollback()
        gate.close()
    return readers


@contextmanager
def _rolled_back(conn: Connection) -> Iterator[Connection]:
    """``conn`` inside a transaction that is rolled back at the end."""
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
