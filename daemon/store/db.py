"""Database engine, sessions and schema upgrades: one code path for SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    create_engine,
    event,
    insert,
    inspect,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapper,
    Session,
    make_transient_to_detached,
    sessionmaker,
)
from sqlalchemy.orm.attributes import instance_state

from postdesk.daemon.store.direct import (
    Direct,
    defer_sends,
    drop_queued,
    run_plain,
    send_queued,
    values_of,
)

if TYPE_CHECKING:  # Alembic loads only when the schema is not known to be at head
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "models" / "migrations"
SCHEMA_HEAD = "0015_lz4_compression"  # the newest migration (tests/test_schema_startup.py checks)
SQLITE_BUSY_TIMEOUT_MS = 30_000
# A writer waiting for the write lock tries again after 0.5 ms, then after pauses 1.5 times
# longer each time, up to 2 ms: a short wait ends within half a millisecond of the lock's
# release, and a long one (a burst) costs a waiting thread about 4% of a core, not the 7% of
# trying every 0.5 ms throughout (docs/design.md, "Storage").
SQLITE_LOCK_POLL_SECONDS = 0.0005
SQLITE_LOCK_POLL_LONGEST = 0.002
SQLITE_CACHE_KIB = 8000  # the page cache of each SQLite connection that writes
SQLITE_READER_CACHE_KIB = 2000  # and of a reader's (make_reader_engine): SQLite's default
SQLITE_TEMP_STORE_MEMORY = 2  # PRAGMA temp_store: temporary tables and journals in memory
TICKET_COUNTER = "ticket_number"  # SQLite's counter row of ticket numbers
TICKET_SEQUENCE = "ticket_numbers"  # PostgreSQL's sequence of them (migration 0009)
_Row = TypeVar("_Row", bound=DeclarativeBase)
_Value = TypeVar("_Value")
_NEXT_TICKET_NUMBER = Direct(text(f"SELECT nextval('{TICKET_SEQUENCE}')"))


def in_list(values: Iterable[_Value]) -> list[_Value]:
    """``values`` for an ``IN (...)``, padded to a power of two long with the last of them.

    Each length of an ``IN`` list is a statement of its own, and every connection keeps the
    last 128 statements it ran compiled (SQLite's take ~225 bytes a parameter). Padded, a query
    meets at most ten lengths up to 512, so a long-running process keeps a few compiled copies
    of it, not one per length it ever met, and finds them compiled again. A repeated value
    changes nothing an ``IN`` selects.
    """
    listed = list(values)
    if listed:
        listed += [listed[-1]] * ((1 << (len(listed) - 1).bit_length()) - len(listed))
    return listed


def in_pages(rows: Sequence[_Value], most: int = 64) -> Iterator[Sequence[_Value]]:
    """``rows`` in consecutive pages whose lengths are powers of two, ``most`` (a power of two)
    at most: the pages of a multi-row INSERT that SQLAlchemy writes as one statement each
    (``executemany`` with RETURNING, or on psycopg), in few shapes, as :func:`in_list` keeps an
    ``IN``'s. Unpaged, each count of rows is a statement of its own (one of 500 rows of nine
    columns compiles to ~1 MB in SQLite), kept compiled by the connection that ran it."""
    start = 0
    while start < len(rows):
        size = min(most, 1 << ((len(rows) - start).bit_length() - 1))
        yield rows[start : start + size]
        start += size


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and write-locking transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        if engine.dialect.driver == "psycopg" and _pipeline_supported():
            defer_sends(engine)
        return _plain_savepoints(engine)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_begin_immediate)
    return _plain_savepoints(engine)


def _pipeline_supported() -> bool:
    """Whether psycopg's libpq has pipeline mode (libpq 14 and later)."""
    import psycopg

    return bool(psycopg.Pipeline.is_supported())


def _plain_savepoints(engine: Engine) -> Engine:
    """Have ``engine`` send SAVEPOINT, RELEASE SAVEPOINT and ROLLBACK TO SAVEPOINT as plain SQL.

    SQLAlchemy compiles its savepoint clauses anew every time (they have no cache key): two
    thirds of a savepoint's cost, and the worker takes one per message. They run straight on
    the DBAPI cursor (``store.direct.run_plain``: no result is built for them). The names are
    SQLAlchemy's own (``sa_savepoint_<n>``), never outside input.
    """
    dialect = engine.dialect

    def savepoint(connection: Connection, name: str) -> None:
        run_plain(connection, f"SAVEPOINT {name}")

    def rollback_to(connection: Connection, name: str) -> None:
        drop_queued(connection)  # sent after the savepoint began: undone all the same
        run_plain(connection, f"ROLLBACK TO SAVEPOINT {name}")

    def release(connection: Connection, name: str) -> None:
        if not connection.get_execution_options().get(_OPEN_SAVEPOINTS):
            run_plain(connection, f"RELEASE SAVEPOINT {name}")

    dialect.do_savepoint = savepoint  # type: ignore[method-assign]
    dialect.do_rollback_to_savepoint = rollback_to  # type: ignore[method-assign]
    dialect.do_release_savepoint = release  # type: ignore[method-assign]
    return engine


def send_pending(session: Session) -> None:
    """Send the statements ``session``'s connection holds back for the next one (PostgreSQL:
    ``store.direct``), raising their errors now: before a savepoint ends, so that they are
    its own."""
    send_queued(session.connection())


def leave_savepoints_open(session: Session) -> None:
    """On PostgreSQL, have the savepoints of ``session``'s transaction (begun, no statement run
    yet) left open where SQLAlchemy releases them: no ``RELEASE SAVEPOINT`` round trip.

    Releasing only merges a savepoint into the one around it; a later rollback to an outer
    savepoint, or of the transaction, undoes an open one all the same, so the outcome is the
    same. The server commits the open ones with the transaction (each keeps its few bytes of
    state until then). For the worker's group commit: one savepoint per message, up to
    ``processing.batch_size`` deep. SQLite releases as before: there a savepoint left open keeps
    its pages in the statement journal, which a release lets it drop.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={_OPEN_SAVEPOINTS: True})


_OPEN_SAVEPOINTS = "postdesk_open_savepoints"  # execution option: RELEASE SAVEPOINT is not sent


@functools.cache
def make_reader_engine(url: str) -> Engine:
    """An engine for reads alongside a writer: on SQLite its transactions begin deferred, so
    a read sees the last commit at once instead of queueing behind a transaction in progress
    (plugin lookups run while the worker holds the write lock). One per database in a
    process: the plugins that read share its connections, each with SQLite's default page
    cache (a lookup reads a few pages; the writer's larger cache is for a batch)."""
    if make_url(url).get_backend_name() != "sqlite":
        return make_engine(url)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "connect", _sqlite_reader_cache)
    return engine


def _sqlite_reader_cache(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_READER_CACHE_KIB}")
    cursor.close()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, decide where transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # A savepoint journals every page it changes (the worker takes one per message, ~50 pages):
    # in memory, not in a temporary file (~110 fewer writes per message). And a page cache of
    # 8 MB holds a whole batch of 50 messages (the 2 MB default spills it: twice the reads).
    cursor.execute(f"PRAGMA temp_store={SQLITE_TEMP_STORE_MEMORY}")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    """Take the write lock up front (so that two writers queue instead of deadlocking),
    trying again after ``SQLITE_LOCK_POLL_SECONDS``, then after pauses growing to
    ``SQLITE_LOCK_POLL_LONGEST``, while another writer holds it, for at most
    ``SQLITE_BUSY_TIMEOUT_MS`` (then "database is locked", as SQLite's own wait ends).

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, then 100 ms
    between tries, so a writer that has waited a while wakes up to 100 ms after the lock is
    free, while writers that just arrived take it first. With the worker, the releases of held
    mail, the plugins process and the outbox sender writing at 100 mails a second, that gave
    the ticket commit a p99 of 45 ms against 20 ms with this poll (bench_pipeline.py
    --steady-seconds --plugins)."""
    cursor = connection.connection.driver_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")  # this statement only: restored below
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = SQLITE_LOCK_POLL_SECONDS
    try:
        while time.monotonic() < deadline:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error):
                    break
            time.sleep(pause)
            pause = min(pause * 1.5, SQLITE_LOCK_POLL_LONGEST)
        # the last try, through SQLAlchemy: its error is raised as SQLAlchemy raises any other
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A factory of sessions whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit when the block ends, roll back when it raises."""
    with factory() as session, session.begin():
        yield session


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration bound to ``engine`` (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade_schema(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration; safe to run at every start.

    A database whose one recorded revision is the newest migration's is left as it is without
    loading Alembic; any other (new, behind, ahead, unknown) goes through Alembic as always.
    """
    if _recorded_revisions(engine) == [SCHEMA_HEAD]:
        return
    from alembic import command

    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Several daemons may start at once: let one migrate while the others wait.
            connection.execute(text("SELECT pg_advisory_xact_lock(7434570)"))
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _recorded_revisions(engine: Engine) -> list[str] | None:
    """The revisions in the database's ``alembic_version`` table, None when it has none."""
    with engine.begin() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


def ping(engine: Engine) -> None:
    """Raise when the database cannot answer a trivial query."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def connection_of(target: Session | Connection) -> Connection:
    """The connection to run a statement on: ``target`` itself, or its session's (in the
    session's transaction). A caller running several statements asks once."""
    return target if isinstance(target, Connection) else target.connection()


def insert_ignore(
    target: Session | Connection, table: Any, values: dict[str, Any], keys: list[str]
) -> None:
    """INSERT a row unless one with the same ``keys`` exists (safe against concurrent inserts);
    on a session's connection, or on ``target`` itself."""
    connection = connection_of(target)
    _insert_ignore_statement(connection.dialect.name, table, tuple(keys), frozenset(values)).send(
        connection, values
    )


@functools.cache
def _insert_ignore_statement(
    dialect: str, table: Any, keys: tuple[str, ...], columns: frozenset[str]
) -> Direct:
    """``INSERT ... ON CONFLICT (keys) DO NOTHING`` of ``columns`` into ``table``, built once."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return Direct(pg_insert(table).on_conflict_do_nothing(index_elements=list(keys)), columns)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return Direct(sqlite_insert(table).on_conflict_do_nothing(index_elements=list(keys)), columns)


ROWS_PER_INSERT = 16  # rows per multi-row INSERT statement; more rows take several


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT ``rows`` (each with the same keys) into ``table``, in order, with one multi-row
    statement per ``ROWS_PER_INSERT``: the server runs one statement where ``executemany``
    runs one per row (PostgreSQL). No rows: no statement."""
    for count, bound in bound_rows(rows):
        _rows_insert(table, tuple(rows[0]), count).send(connection, bound)


def bound_rows(rows: Sequence[Mapping[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``rows`` by ``ROWS_PER_INSERT``: the number of rows of each chunk, and their values
    bound as ``<column>_<i>`` for row ``i`` of the chunk (a multi-row statement's parameters)."""
    if not rows:
        return
    columns = tuple(rows[0])
    take = values_of(columns)
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start : start + ROWS_PER_INSERT]
        bound: dict[str, Any] = {}
        for names, row in zip(_bind_names(columns, len(chunk)), chunk, strict=True):
            bound.update(zip(names, take(row), strict=True))
        yield len(chunk), bound


@functools.cache
def _bind_names(columns: tuple[str, ...], count: int) -> list[tuple[str, ...]]:
    """The names ``<column>_<i>`` of the parameters of rows 0 to ``count - 1``."""
    return [tuple(f"{column}_{i}" for column in columns) for i in range(count)]


@functools.cache
def _rows_insert(table: Table, columns: tuple[str, ...], count: int) -> Direct:
    """The INSERT of ``count`` rows of ``columns`` into ``table``, bound as :func:`bound_rows`
    binds them, built once."""
    rows = [{name: typed_bind(table, name, i) for name in columns} for i in range(count)]
    return Direct(insert(table).values(rows))


def typed_bind(table: Table, column: str, row: int) -> Any:
    """The parameter of ``column`` of row ``row`` of a multi-row INSERT into ``table``, with
    the column's type: SQLAlchemy types only the first row's by itself, and an untyped value
    is stored as the driver has it (SQLite: a datetime as ``str()``, offset and all)."""
    return bindparam(f"{column}_{row}", type_=table.c[column].type)


def new_row(model: type[_Row], values: dict[str, Any]) -> _Row:
    """A new ``model`` object holding ``values`` (column keys), for :func:`add_row`.

    The same object ``model(**values)`` makes, without the ORM's event for every attribute
    set (nothing is tracked on an object :func:`add_row` writes whole).
    """
    keys, new_instance, _relations = _shape(model)
    if not keys.issuperset(values):
        unknown = values.keys() - keys
        raise TypeError(f"{model.__name__} has no column {sorted(unknown)[0]!r}")
    row = new_instance()
    row.__dict__.update(values)
    return cast(_Row, row)


@functools.cache
def _shape(model: type) -> tuple[frozenset[str], Callable[[], Any], frozenset[str]]:
    """The keys of ``model``'s columns, the maker of its bare instances, and the keys of its
    relationships."""
    mapper: Mapper[Any] = inspect(model)
    columns = frozenset(key for key, _generate, _default in _columns(model)[1])
    return columns, mapper.class_manager.new_instance, frozenset(mapper.relationships.keys())


def add_row(session: Session, row: Any, connection: Connection | None = None) -> None:
    """Write the new ORM object ``row`` at once with one Core INSERT (on ``connection``, the
    session's), then keep it in ``session`` as a loaded, persistent object (later changes to it
    are flushed as usual).

    Cheaper than ``session.add`` and a flush: no unit of work for a row written once. Every
    column must be set, or have a scalar default; an unset single primary key is generated.
    The session does not forget ``row`` when a savepoint around this rolls back: whoever rolls
    one back expunges what it wrote (the worker does, per message).
    """
    table, key, values = _row_values(type(row), row)
    connection = connection or session.connection()
    if key is None:
        _plain_insert(table).send(connection, values)
    else:
        row.__dict__[key] = _returning_insert(table, key).one(connection, values)[0]
    _keep(session, row)


def add_ticket_row(session: Session, row: Any, connection: Connection) -> None:
    """:func:`add_row` for a new ticket whose ``number`` is unset: it gets the next ticket
    number (:func:`next_ticket_number`). On PostgreSQL the INSERT itself takes it from the
    sequence and returns it: one statement and round trip fewer per new ticket."""
    if row.__dict__.get("number") is not None:
        raise ValueError(f"a new ticket has no number yet, not {row.number}")
    if connection.dialect.name != "postgresql":
        row.__dict__["number"] = next_ticket_number(connection)
        add_row(session, row, connection)
        return
    table, key, values = _row_values(type(row), row)
    del values["number"]
    assert key is not None, "the ticket's id is the database's"
    row.__dict__[key], row.__dict__["number"] = _numbered_insert(table, key).one(connection, values)
    _keep(session, row)


def _keep(session: Session, row: Any) -> None:
    """Keep ``row``, just written whole, in ``session`` as a loaded, persistent object."""
    model: type = type(row)
    make_transient_to_detached(row)  # every value written counts as loaded from now on
    if _shape(model)[2].isdisjoint(row.__dict__):
        # No related object set on it: the ORM's save cascade (``session.add``) would walk every
        # relationship to find none. The step of ``add`` that keeps it (SQLAlchemy < 2.2):
        session._update_impl(instance_state(row))
    else:
        session.add(row)


def _row_values(model: type, row: Any) -> tuple[Table, str | None, dict[str, Any]]:
    """``row``'s table, the primary key attribute to generate (if unset) and its column values,
    unset ones taking their column's scalar default (or None), set on ``row`` too (straight in
    its ``__dict__``: :func:`add_row` marks them all loaded, no attribute event is needed)."""
    table, columns = _columns(model)
    state = row.__dict__
    generated: str | None = None
    values: dict[str, Any] = {}
    for key, generate, default in columns:
        if key in state:
            values[key] = state[key]
        elif generate:
            generated = key
        elif default is _NOT_SCALAR:
            raise ValueError(f"{model.__name__}.{key} must be set")
        else:
            state[key] = values[key] = default
    return table, generated, values


_NOT_SCALAR = object()  # a column default computed per row (e.g. a clock): the caller sets it


@functools.cache
def _columns(model: type) -> tuple[Table, list[tuple[str, bool, Any]]]:
    """``model``'s table and, per column: its key, whether the database generates it (a single
    integer primary key) and its scalar default (``_NOT_SCALAR`` when it has another kind)."""
    mapper: Mapper[Any] = inspect(model)
    single_key = len(mapper.primary_key) == 1
    columns: list[tuple[str, bool, Any]] = []
    for attribute in mapper.column_attrs:
        column = attribute.columns[0]
        if attribute.key != column.key:
            raise ValueError(f"{model.__name__}.{attribute.key}: attribute and column differ")
        default = column.default
        scalar: Any = None
        if default is not None:
            scalar = default.arg if default.is_scalar else _NOT_SCALAR
        columns.append((column.key, bool(column.primary_key and single_key), scalar))
    return cast(Table, mapper.local_table), columns


@functools.cache
def _plain_insert(table: Table) -> Direct:
    """``INSERT INTO table`` of every column, built once."""
    return Direct(insert(table), [column.key for column in table.columns])


@functools.cache
def _returning_insert(table: Table, key: str) -> Direct:
    """``INSERT INTO table ... RETURNING key`` of every column but ``key``, built once."""
    columns = [column.key for column in table.columns if column.key != key]
    return Direct(insert(table).returning(table.c[key]), columns)


@functools.cache
def _numbered_insert(table: Table, key: str) -> Direct:
    """``INSERT INTO tickets ... RETURNING key, number`` of every column but ``key``, the
    number the sequence's next value (PostgreSQL), built once."""
    columns = [column.key for column in table.columns if column.key not in (key, "number")]
    numbered = insert(table).values(number=text(f"nextval('{TICKET_SEQUENCE}')"))
    return Direct(numbered.returning(table.c[key], table.c.number), columns)


def next_counter_value(target: Session | Connection, name: str) -> int:
    """Bump the counter ``name`` under a row lock and return its new value (1 the first time);
    in a session's transaction, or on a connection.

    The row lock (PostgreSQL) or write lock (SQLite) is held until commit, so concurrent
    daemons never receive the same value; a rolled-back transaction leaves a gap at most.
    """
    bump, table = _bump_counter()
    connection = connection_of(target)
    row = bump.one(connection, {"counter": name})
    if row is None:  # the first time only: create the counter, then bump it
        insert_ignore(connection, table, {"name": name, "value": 0}, ["name"])
        row = bump.one(connection, {"counter": name})
    return int(row[0])


@functools.cache
def _bump_counter() -> tuple[Direct, Table]:
    """``UPDATE counters SET value = value + 1 ... RETURNING value`` and the table, built once.

    A Core statement on the table: counters are never loaded as objects, so no ORM bookkeeping.
    """
    from postdesk.models.schema import Counter

    table = cast(Table, Counter.__table__)
    bump = (
        update(table)
        .where(table.c.name == bindparam("counter"))
        .values(value=table.c.value + 1)
        .returning(table.c.value)
    )
    return Direct(bump), table


def next_ticket_number(target: Session | Connection) -> int:
    """The number of a new ticket: unique, increasing, with gaps where a transaction rolled back
    (in a session's transaction, or on a connection).

    PostgreSQL takes it from the ``ticket_numbers`` sequence, which locks nothing until commit,
    so several worker processes create tickets side by side; SQLite (one writer at a time)
    bumps the ``ticket_number`` counter row.
    """
    connection = connection_of(target)
    if connection.dialect.name == "postgresql":
        return int(_NEXT_TICKET_NUMBER.one(connection)[0])
    return next_counter_value(connection, TICKET_COUNTER)


def next_shared_value(session: Session, name: str) -> int:
    """Bump the counter ``name`` for a choice that may skip a value but must not serialise
    writers (a round-robin turn): on PostgreSQL in its own short transaction, committed at once,
    so no row lock is held through the caller's transaction; on SQLite in the caller's."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql" or not isinstance(bind, Engine):
        return next_counter_value(session, name)
    with Session(bind) as own, own.begin():
        return next_counter_value(own, name)
