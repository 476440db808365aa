"""Core statements run straight on the DBAPI cursor of a session's connection.

SQLAlchemy's execution of a Core statement (cache lookup, execution context, parameter
construction, result set-up) costs several times the DBAPI's own execute; the worker runs
about ten statements per message. A :class:`Direct` statement is compiled once per dialect,
keeps SQLAlchemy's bind processors for its parameters (so stored values are exactly what
SQLAlchemy would store: SQLite's datetime strings, booleans, JSON...; a plain datetime's SQLite
text is formatted from a tuple, the same text), and runs on the same
DBAPI connection, in the same transaction and savepoint, through
``Connection._cursor_execute`` (:func:`_run` takes the same steps for ``executemany`` and
statements without parameters): engine events (``before_cursor_execute``), echo logging and
SQLAlchemy's wrapping of DBAPI errors (``OperationalError``, invalidation on a lost
connection) stay as they are. A missing value raises ``KeyError``.

On PostgreSQL with psycopg (:func:`defer_sends`), a statement whose outcome nobody reads (an
INSERT run with :meth:`Direct.send`) is queued on its connection and sent with the next
statement in one round trip (psycopg's pipeline mode): a new ticket's ten statements take five
round trips. Order is kept: anything else run on the connection (SQLAlchemy's statements, a
savepoint, the commit) sends the queue first, and a rollback drops it. Its errors are raised
by the statement it went with, or by :func:`send_queued`, which the worker calls before a
message's savepoint ends, so they stay the message's own.

Limits, checked when a statement is compiled: no expanding (``IN``) parameters, no Python
defaults computed per row (a column left out must have a scalar default or a server one),
and returned columns must need no result processing (integers, text): rows are the DBAPI's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple, cast

from sqlalchemy import ColumnDefault, Connection, Engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.types import TypeEngine

_REQUIRED = object()  # a parameter with no value of its own: the caller must pass one


class _Bind(NamedTuple):
    """One parameter of a compiled statement: where its value comes from and how it is bound."""

    key: str  # the key in the caller's values
    default: Any  # its value when the caller passes none (_REQUIRED: none allowed)
    process: Callable[[Any], Any] | None  # SQLAlchemy's bind processor for the dialect


class _Compiled(NamedTuple):
    """A statement as one dialect runs it."""

    sql: str
    names: tuple[str, ...] | None  # the parameter names of a named paramstyle; None: positional
    defaults: dict[str, Any]  # the values of binds a caller may leave out, by key
    values_of: Callable[[Mapping[str, Any]], tuple[Any, ...]]  # every bind's value, in order
    processed: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, processor) of binds


class Direct:
    """A Core statement, compiled once per dialect, run on a connection's DBAPI cursor.

    "Per dialect" is per database, driver and server version: engines that differ only in
    dialect options (a custom JSON serializer, a paramstyle) would share one compiled form;
    the daemon's engines do not.

    ``keys``: for an INSERT or UPDATE, the columns the caller's values hold (the statement is
    compiled for exactly these, as SQLAlchemy compiles it for the keys of the parameters).
    """

    def __init__(self, statement: ClauseElement, keys: Iterable[str] | None = None) -> None:
        self.statement = statement
        self.keys = None if keys is None else sorted(keys)
        self._by_dialect: dict[tuple[object, ...], _Compiled] = {}

    def execute(self, connection: Connection, values: Mapping[str, Any] | None = None) -> Any:
        """Run the statement with ``values``; returns the DBAPI cursor (rows as the DBAPI
        gives them). Statements queued on ``connection`` go with it."""
        compiled = self._compiled(connection.dialect)
        parameters = _parameters(compiled, values or {})
        cursor = connection.connection.cursor()
        queued = connection.__dict__.pop(_QUEUED, None)
        if queued:
            _pipelined(connection, [*queued, (compiled.sql, parameters)], cursor)
        else:
            connection._cursor_execute(cursor, compiled.sql, parameters)
        return cursor

    def send(self, connection: Connection, values: Mapping[str, Any] | None = None) -> None:
        """Run the statement with ``values``, nothing read back: where the engine defers
        (:func:`defer_sends`), queued on ``connection`` and sent with the next statement."""
        if not getattr(connection.dialect, _DEFERS, False):
            self.execute(connection, values).close()
            return
        compiled = self._compiled(connection.dialect)
        queued = connection.__dict__.setdefault(_QUEUED, [])
        queued.append((compiled.sql, _parameters(compiled, values or {})))

    def execute_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement once per row of ``rows`` (the DBAPI's ``executemany``); nothing is
        returned."""
        if len(rows) == 1:
            self.execute(connection, rows[0]).close()
            return
        compiled = self._compiled(connection.dialect)
        parameters = [_parameters(compiled, row) for row in rows]
        _run(connection, compiled.sql, parameters)

    def one(self, connection: Connection, values: Mapping[str, Any] | None = None) -> Any:
        """The one row the statement returns (a tuple); None when it returns none."""
        cursor = self.execute(connection, values)
        row = cursor.fetchone()
        cursor.close()
        return row

    def _compiled(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, dialect.driver, dialect.server_version_info)
        compiled = self._by_dialect.get(key)
        if compiled is None:
            compiled = self._by_dialect[key] = _compile(self.statement, dialect, self.keys)
        return compiled


_DEFERS = "postdesk_defers"  # dialect attribute: Direct.send queues (see defer_sends)
_QUEUED = "_postdesk_queued"  # Connection attribute: the (sql, parameters) queued by send


def defer_sends(engine: Engine) -> None:
    """Have :meth:`Direct.send` queue its statements on ``engine`` (PostgreSQL with psycopg,
    whose pipeline mode sends several statements in one round trip): any other statement on
    the connection and its commit send them first, a rollback drops them (a rollback to a
    savepoint too: ``store.db`` drops them there, and the savepoint's own statement sent the
    ones from before it)."""
    setattr(engine.dialect, _DEFERS, True)
    event.listen(engine, "before_cursor_execute", _send_before)
    event.listen(engine, "commit", send_queued)
    event.listen(engine, "rollback", drop_queued)


def _send_before(connection: Connection, *_statement: object) -> None:
    """Before any statement but a Direct one (which takes the queue with it): send the queue."""
    if _QUEUED in connection.__dict__:
        send_queued(connection)


def send_queued(connection: Connection) -> None:
    """Send the statements queued on ``connection`` (one round trip), raising the first
    error among them; nothing when none is queued."""
    queued = connection.__dict__.pop(_QUEUED, None)
    if queued:
        cursor = connection.connection.cursor()
        _pipelined(connection, queued, cursor)
        cursor.close()


def drop_queued(connection: Connection) -> None:
    """Forget the statements queued on ``connection`` (its transaction or savepoint is rolled
    back: what they would have written goes all the same)."""
    connection.__dict__.pop(_QUEUED, None)


def _pipelined(connection: Connection, statements: list[tuple[str, Any]], cursor: Any) -> None:
    """Run ``statements`` in one round trip (psycopg's pipeline mode), the last on ``cursor``
    (its rows are read there after), with their engine events and SQLAlchemy's wrapping of
    DBAPI errors (the first failing statement's error is raised, about all of them)."""
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    sent = []
    try:
        with dbapi.pipeline():
            for position, (sql, parameters) in enumerate(statements):
                for listen in connection.dispatch.before_cursor_execute:
                    sql, parameters = listen(connection, cursor, sql, parameters, None, False)
                sent.append((sql, parameters))
                last = position == len(statements) - 1
                (cursor if last else dbapi.cursor()).execute(sql, parameters)
        for sql, parameters in sent:
            connection.dispatch.after_cursor_execute(
                connection, cursor, sql, parameters, None, False
            )
    except BaseException as error:
        sql = ";\n".join(sql for sql, _parameters in sent)
        connection._handle_dbapi_exception(error, sql, None, cursor, None)


def run_plain(connection: Connection, sql: str) -> None:
    """Run ``sql``, a statement without parameters (e.g. ``SAVEPOINT x``), as
    ``Connection.exec_driver_sql`` would, without building a result for it."""
    _run(connection, sql, None)


def _run(connection: Connection, sql: str, parameters: list[Any] | None) -> None:
    """Run ``sql`` once per item of ``parameters`` (None: once, without parameters) on a new
    cursor of ``connection``, with its events and its wrapping of DBAPI errors."""
    cursor = connection.connection.cursor()
    many = parameters is not None
    try:
        if connection._has_events or connection.engine._has_events:
            for listen in connection.dispatch.before_cursor_execute:
                sql, parameters = listen(connection, cursor, sql, parameters, None, many)
        if connection._echo:
            connection._log_info(sql)
        if parameters is None:
            connection.dialect.do_execute_no_params(cursor, sql)
        else:
            connection.dialect.do_executemany(cursor, sql, parameters)
        if connection._has_events or connection.engine._has_events:
            connection.dispatch.after_cursor_execute(
                connection, cursor, sql, parameters, None, many
            )
    except BaseException as error:
        connection._handle_dbapi_exception(error, sql, parameters, cursor, None)
    cursor.close()


def _parameters(compiled: _Compiled, values: Mapping[str, Any]) -> Any:
    """The DBAPI parameters of one execution: a tuple, or a dict for a named paramstyle.

    The values are taken all at once (``operator.itemgetter``, over the defaults updated with
    ``values`` when there are defaults), and only the binds with a processor are processed.
    """
    taken = compiled.values_of({**compiled.defaults, **values} if compiled.defaults else values)
    if compiled.processed:
        bound = list(taken)
        for position, process in compiled.processed:
            bound[position] = process(bound[position])
        taken = tuple(bound)
    if compiled.names is None:
        return taken
    return dict(zip(compiled.names, taken, strict=True))


def values_of(keys: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A function of a mapping returning its values of ``keys``, in order, as a tuple
    (``KeyError`` for a missing one)."""
    if len(keys) == 1:
        [key] = keys
        return lambda values: (values[key],)
    if not keys:
        return lambda _values: ()
    return itemgetter(*keys)


def _compile(statement: ClauseElement, dialect: Dialect, keys: list[str] | None) -> _Compiled:
    """Compile ``statement`` for ``dialect`` and read off how each parameter is bound."""
    # An INSERT without RETURNING of its own is compiled as for executemany, so that no
    # dialect adds the implicit ``RETURNING id`` (PostgreSQL) nobody here reads.
    plain = isinstance(statement, UpdateBase) and not statement.returning_column_descriptions
    compiled = statement.compile(dialect=dialect, column_keys=keys, for_executemany=plain)
    assert isinstance(compiled, SQLCompiler)
    if compiled._render_postcompile or compiled.post_compile_params:
        raise ValueError(f"{statement}: expanding parameters are not supported")
    defaults = _scalar_defaults(compiled, statement)
    by_name = {name: bind for bind, name in compiled.bind_names.items()}
    names = compiled.positiontup if compiled.positional else list(by_name)
    processors = compiled._bind_processors
    binds = []
    for name in names or ():
        bind = by_name[name]
        if bind.key in defaults:
            default = defaults[bind.key]
        elif bind.required:
            default = _REQUIRED
        else:
            default = bind.effective_value if bind.callable else bind.value
        found = processors.get(name)
        if isinstance(found, tuple):
            raise ValueError(f"{statement}: tuple parameters are not supported")
        process = cast(Callable[[Any], Any] | None, found)
        if process is not None and _sqlite_datetime(bind.type.dialect_impl(dialect)):
            process = _datetime_text(process)
        binds.append(_Bind(bind.key, default, process))
    for column in compiled._result_columns:
        if column[3]._cached_result_processor(dialect, None) is not None:
            raise ValueError(f"{statement}: column {column[0]} needs result processing")
    escaped = [compiled.escaped_bind_names.get(name, name) for name in names or ()]
    processed = tuple((i, bind.process) for i, bind in enumerate(binds) if bind.process)
    return _Compiled(
        compiled.string,
        None if compiled.positional else tuple(escaped),
        {bind.key: bind.default for bind in binds if bind.default is not _REQUIRED},
        values_of([bind.key for bind in binds]),
        processed,
    )


def _sqlite_datetime(type_: TypeEngine[Any]) -> bool:
    """Whether ``type_`` is SQLite's DATETIME storing SQLAlchemy's default text
    (``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    default = sqlite.DATETIME._storage_format
    return isinstance(type_, sqlite.DATETIME) and type_._storage_format == default


_DATETIME_TEXT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"  # SQLite DATETIME's default storage format
# The datetime last formatted and its text; the entry holds the datetime alive, so an identity
# match is never a recycled object (a datetime is immutable: the same object, the same text).
_last_datetime: tuple[object, str] = (None, "")


def _datetime_text(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """SQLite DATETIME's bind processor ``process``, with a plain datetime's text made from a
    tuple of its fields, not a dict of them (a date, None or anything else goes to
    ``process``): the same text in well under half the time, for the ~30 datetimes of a
    message. The datetime last formatted is answered from ``_last_datetime`` (a step writes
    its one ``now`` to several columns and rows)."""

    def text(value: Any) -> Any:
        global _last_datetime
        if type(value) is datetime:
            last = _last_datetime
            if last[0] is value:
                return last[1]
            fields = value.year, value.month, value.day, value.hour, value.minute, value.second
            found = _DATETIME_TEXT % (*fields, value.microsecond)
            _last_datetime = (value, found)
            return found
        return process(value)

    return text


def _scalar_defaults(compiled: SQLCompiler, statement: ClauseElement) -> dict[str, Any]:
    """The values of the columns an INSERT or UPDATE leaves to their defaults, by bind key;
    refuses a default computed per execution (the caller must set that column)."""
    defaults: dict[str, Any] = {}
    for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
        default = column.default if column in compiled.insert_prefetch else column.onupdate
        if not isinstance(default, ColumnDefault) or not default.is_scalar:
            raise ValueError(f"{statement}: {column.key} has a default computed per row")
        defaults[column.key] = default.arg
    return defaults
