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


def distribution(
    conn: Connection, rows: CTE, value: str, dimensions: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Count, mean, median and p90 (nearest rank) of ``rows.c[value]``, overall and per each
    of ``dimensions`` (columns of ``rows``; NULL keys appear as ``""``).

    Returns ``{"all": [row], dimension: [row per key, sorted by key]}``.
    """
    parts = [
        select(literal("all").label("dim"), literal("").label("key"), rows.c[value].label("v"))
    ]
    parts += [
        select(
            literal(dim).label("dim"),
            func.coalesce(rows.c[dim], "").cast(String).label("key"),
            rows.c[value].label("v"),
        )
        for dim in dimensions
    ]
    keyed = union_all(*parts).subquery("keyed")
    partition = (keyed.c.dim, keyed.c.key)
    ranked = select(
        keyed.c.dim,
        keyed.c.key,
        keyed.c.v,
        func.row_number().over(partition_by=partition, order_by=keyed.c.v).label("rn"),
        func.count().over(partition_by=partition).label("n"),
    ).subquery("ranked")
    rank_median = (ranked.c.n + 1) // 2
    rank_p90 = (ranked.c.n * 9 + 9) // 10
    summary = select(
        ranked.c.dim,
        ranked.c.key,
        func.max(ranked.c.n),
        func.avg(ranked.c.v),
        func.max(case((ranked.c.rn == rank_median, ranked.c.v))),
        func.max(case((ranked.c.rn == rank_p90, ranked.c.v))),
    ).group_by(ranked.c.dim, ranked.c.key)
    found: dict[str, list[dict[str, Any]]] = {"all": [], **{d: [] for d in dimensions}}
    for dim, key, n, mean, median, p90 in conn.execute(
        summary.order_by(ranked.c.dim, ranked.c.key)
    ):
        found[dim].append(
            {
                "key": key,
                "count": int(n),
                "mean": _round(mean),
                "median": _round(median),
                "p90": _round(p90),
            }
        )
    if not found["all"]:
        found["all"].append({"key": "", "count": 0, "mean": None, "median": None, "p90": None})
    return found


def histogram(conn: Connection, rows: CTE, value: str) -> list[dict[str, Any]]:
    """How many values of ``rows.c[value]`` fall in each of :data:`DURATION_BUCKETS`."""
    bucket = case(
        *[(rows.c[value] < bound, index) for index, (_, bound) in enumerate(DURATION_BUCKETS[:-1])],
        else_=len(DURATION_BUCKETS) - 1,
    ).label("bucket")
    counts = [0] * len(DURATION_BUCKETS)
    query = select(bucket, func.count()).where(rows.c[value].is_not(None)).group_by(bucket)
    for index, n in conn.execute(query):
        counts[int(index)] = int(n)
    return [
        {"bucket": label, "count": n}
        for (label, _), n in zip(DURATION_BUCKETS, counts, strict=True)
    ]


def grouped_counts(
    conn: Connection, key: Expression, source: FromClause, *where: ColumnElement[bool]
) -> dict[str, int]:
    """Rows of ``source`` matching ``where`` counted by ``key`` (NULL as ``""``), sorted by key."""
    label = func.coalesce(key, "").label("key")
    query = select(label, func.count()).select_from(source).where(*where).group_by(label)
    return {str(k): int(n) for k, n in conn.execute(query.order_by(label))}


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
