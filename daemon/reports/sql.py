"""SQL building blocks shared by the sections: durations, period tables, percentiles, buckets.

Everything here is SQLAlchemy Core that runs unchanged on SQLite and PostgreSQL; the only
dialect-specific piece is :class:`seconds_between`.
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
    case,
    column,
    func,
    literal,
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

# Upper bounds (seconds, exclusive) of the duration histogram; the last bucket is open-ended.
DURATION_BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 1h", 3600.0),
    ("1-4h", 4 * 3600.0),
    ("4-8h", 8 * 3600.0),
    ("8-24h", 24 * 3600.0),
    ("1-3d", 3 * 86400.0),
    ("3-7d", 7 * 86400.0),
    (">= 7d", float("inf")),
)


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


def durations(conn: Connection, rows: CTE, dimensions: Sequence[str]) -> dict[str, Any]:
    """Figures of ``rows.c.seconds`` (NULL: no duration yet), in one statement.

    Count, mean, median and p90 (nearest rank) overall and per each of ``dimensions`` (columns
    of ``rows``; NULL keys appear as ``""``), the histogram over :data:`DURATION_BUCKETS`, and
    how many rows have no duration. Returns ``{"overall": {...}, "by_<dim>": [...],
    "histogram": [...], "missing": n}``.
    """
    seconds = rows.c.seconds
    known = seconds.is_not(None)
    parts = [select(literal("all").label("dim"), literal("").label("key"), seconds).where(known)]
    parts += [
        select(literal(d), func.coalesce(rows.c[d], "").cast(String), seconds).where(known)
        for d in dimensions
    ]
    keyed = union_all(*parts).subquery("keyed")
    partition = (keyed.c.dim, keyed.c.key)
    ranked = select(
        keyed.c.dim,
        keyed.c.key,
        keyed.c.seconds.label("v"),
        func.row_number().over(partition_by=partition, order_by=keyed.c.seconds).label("rn"),
        func.count().over(partition_by=partition).label("n"),
    ).subquery("ranked")
    none = literal(None, Float)
    bucket = case(
        *[(seconds < bound, str(i)) for i, (_, bound) in enumerate(DURATION_BUCKETS[:-1])],
        else_=str(len(DURATION_BUCKETS) - 1),
    )
    statement = union_all(
        select(
            ranked.c.dim,
            ranked.c.key,
            func.max(ranked.c.n),
            func.avg(ranked.c.v),
            func.max(case((ranked.c.rn == (ranked.c.n + 1) // 2, ranked.c.v))),
            func.max(case((ranked.c.rn == (ranked.c.n * 9 + 9) // 10, ranked.c.v))),
        ).group_by(ranked.c.dim, ranked.c.key),
        select(literal("bucket"), bucket, func.count(), none, none, none)
        .where(known)
        .group_by(bucket),
        select(literal("missing"), literal(""), func.count(), none, none, none).where(
            seconds.is_(None)
        ),
    )
    found: dict[str, Any] = {f"by_{d}": [] for d in dimensions}
    found |= {"overall": _figures(0, None, None, None), "missing": 0}
    counts = [0] * len(DURATION_BUCKETS)
    for dim, key, n, mean, median, p90 in sorted(conn.execute(statement), key=lambda r: r[:2]):
        if dim == "bucket":
            counts[int(key)] = int(n)
        elif dim == "missing":
            found["missing"] = int(n)
        elif dim == "all":
            found["overall"] = _figures(n, mean, median, p90)
        else:
            found[f"by_{dim}"].append({"key": key, **_figures(n, mean, median, p90)})
    found["histogram"] = [
        {"bucket": label, "count": n}
        for (label, _), n in zip(DURATION_BUCKETS, counts, strict=True)
    ]
    return found


def _figures(n: Any, mean: Any, median: Any, p90: Any) -> dict[str, Any]:
    return {"count": int(n), "mean": _round(mean), "median": _round(median), "p90": _round(p90)}


def grouped_counts(
    conn: Connection, key: Expression, source: FromClause, *where: ColumnElement[bool]
) -> dict[str, int]:
    """Rows of ``source`` matching ``where`` counted by ``key`` (NULL as ``""``), sorted by key."""
    label = func.coalesce(key, "").label("key")
    query = select(label, func.count()).select_from(source).where(*where).group_by(label)
    return {str(k): int(n) for k, n in conn.execute(query.order_by(label))}


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
