"""SQL building blocks shared by the sections: durations, period tables, percentiles, buckets.

Everything here is SQLAlchemy Core that runs unchanged on SQLite and PostgreSQL; the only
dialect-specific pieces are :class:`seconds_between` and :class:`epoch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Float,
    Integer,
    String,
    cast,
    column,
    func,
    literal,
    null,
    select,
    union_all,
    values,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.expression import CTE, FromClause, FunctionElement
from sqlalchemy.sql.selectable import HasCTE

from postdesk.daemon.reports.periods import Period

Expression = ColumnElement[Any] | QueryableAttribute[Any]


class seconds_between(FunctionElement[float]):
    """``later - earlier`` in seconds, as a float, for two timestamp expressions."""

    type = Float()
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    # julianday() is a float of days: round to the millisecond, so 1 h is 3600, not 3599.9999.
    later, earlier = list(element.clauses)
    return (
        f"round((julianday({compiler.process(later, **kw)}) - "
        f"julianday({compiler.process(earlier, **kw)})) * 86400.0, 3)"
    )


@compiles(seconds_between)
def _seconds_default(element: seconds_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return (
        f"EXTRACT(EPOCH FROM ({compiler.process(later, **kw)} - {compiler.process(earlier, **kw)}))"
    )


class epoch(FunctionElement[float]):
    """A timestamp expression as POSIX seconds (a float, to the millisecond on SQLite)."""

    type = Float()
    inherit_cache = True


@compiles(epoch, "sqlite")
def _epoch_sqlite(element: epoch, compiler: Any, **kw: Any) -> str:
    # Julian day 2440587.5 is 1970-01-01T00:00Z; stored times are UTC.
    (moment,) = list(element.clauses)
    return f"round((julianday({compiler.process(moment, **kw)}) - 2440587.5) * 86400.0, 3)"


@compiles(epoch)
def _epoch_default(element: epoch, compiler: Any, **kw: Any) -> str:
    (moment,) = list(element.clauses)
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(moment, **kw)}) AS DOUBLE PRECISION)"


def periods_cte(periods: Sequence[Period]) -> CTE:
    """The periods as a table ``periods(idx, start, stop)`` for range joins."""
    table = values(
        column("idx", Integer),
        column("start", DateTime(timezone=True)),
        column("stop", DateTime(timezone=True)),
        name="periods",
    ).data([(i, p.start, p.end) for i, p in enumerate(periods)])
    return table.cte("periods")


def per_period(
    conn: Connection,
    periods: Sequence[Period],
    moment: Expression,
    source: FromClause,
    *where: ColumnElement[bool],
) -> list[int]:
    """Count the rows of ``source`` matching ``where`` by the period ``moment`` falls in.

    The periods are joined on ``start <= moment < stop``, which an index on ``moment`` serves.
    Returns one count per period, zeros included.
    """
    table = periods_cte(periods)
    joined = table.join(source, (moment >= table.c.start) & (moment < table.c.stop))
    query = (
        select(table.c.idx, func.count()).select_from(joined).where(*where).group_by(table.c.idx)
    )
    counts = [0] * len(periods)
    for idx, n in conn.execute(query):
        counts[int(idx)] = int(n)
    return counts


def materialized(query: HasCTE, name: str) -> CTE:
    """``query`` as a CTE computed once however often the statement reads it."""
    return query.cte(name).prefix_with("MATERIALIZED")


def grouped_counts(
    conn: Connection, key: Expression, source: FromClause, *where: ColumnElement[bool]
) -> dict[str, int]:
    """Rows of ``source`` matching ``where`` counted by ``key`` (NULL as ``""``), sorted by key."""
    label = func.coalesce(key, "").label("key")
    query = select(label, func.count()).select_from(source).where(*where).group_by(label)
    return {str(k): int(n) for k, n in conn.execute(query.order_by(label))}


def grouped(
    conn: Connection, rows: CTE, dimensions: Sequence[str], value: str | None = None
) -> dict[str, dict[str, tuple[int, float | None]]]:
    """Count (and average ``value``) of ``rows`` per key of each dimension, in one statement.

    ``rows`` should be :func:`materialized`, so it is computed once for every dimension. NULL
    keys appear as ``""``; the result maps dimension -> key -> (count, average or None), keys
    sorted.
    """
    average = func.avg(rows.c[value]) if value else cast(null(), Float)
    parts = []
    for dimension in dimensions:
        key = func.coalesce(rows.c[dimension].cast(String), "")
        parts.append(
            select(literal(dimension), key, func.count(), average).group_by(rows.c[dimension])
        )
    found: dict[str, dict[str, tuple[int, float | None]]] = {d: {} for d in dimensions}
    for dimension, key, n, avg in sorted(conn.execute(union_all(*parts)), key=lambda r: r[:2]):
        found[dimension][str(key)] = (int(n), None if avg is None else float(avg))
    return found


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
