"""Duration figures (count, mean, nearest-rank median and p90, histogram) for a set of rows.

The database computes each ticket's duration (:mod:`postdesk.daemon.reports.speed`) or its
times (:mod:`postdesk.daemon.reports.business`); the statement hands back one float column and
the grouping keys, and the order statistics are taken here with numpy: one sort per group.
That replaced an indexed temporary table with one ``ORDER BY ... OFFSET`` lookup per figure,
which cost more in index builds than the sort does (bench/bench_reports.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import Select

Floats = NDArray[np.float64]
Keys = tuple[list[str], NDArray[np.intp]]

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


def durations(
    conn: Connection, rows: Select[*tuple[Any, ...]], dimensions: Sequence[str]
) -> dict[str, Any]:
    """Figures of the first column of ``rows``: seconds, NULL when there is no duration yet.

    ``rows`` selects the seconds then one key column per dimension (NULL keys as ``""``).
    Returns ``{"overall": {...}, "by_<dimension>": [{"key": ..., ...}], "histogram": [...],
    "missing": n}``; lists are sorted by key.
    """
    fetched = conn.execute(rows).all()
    columns = list(zip(*fetched, strict=True)) if fetched else [()] * (1 + len(dimensions))
    seconds = np.array(columns[0], dtype=np.float64)  # NULL becomes NaN
    known = ~np.isnan(seconds)
    keys = {d: encode(list(columns[1 + i])) for i, d in enumerate(dimensions)}
    found = figures(seconds, keys, known)
    found["histogram"] = histogram(seconds[known])
    found["missing"] = int(len(seconds) - known.sum())
    return found


def encode(keys: list[str]) -> Keys:
    """The distinct keys in first-seen order, and each row's index into them."""
    names = list(dict.fromkeys(keys))
    index = {name: position for position, name in enumerate(names)}
    return names, np.fromiter(map(index.__getitem__, keys), dtype=np.intp, count=len(keys))


def figures(values: Floats, keys: Mapping[str, Keys], chosen: NDArray[np.bool_]) -> dict[str, Any]:
    """``overall`` and a ``by_<dimension>`` list (sorted by key) of the ``chosen`` rows."""
    values = values[chosen]
    found: dict[str, Any] = {"overall": summary(values)}
    for dimension, (names, codes) in keys.items():
        codes = codes[chosen]
        groups = [(name, values[codes == index]) for index, name in enumerate(names)]
        found[f"by_{dimension}"] = [
            {"key": name, **summary(group)} for name, group in sorted(groups) if len(group)
        ]
    return found


def summary(values: Floats) -> dict[str, Any]:
    """Count, mean and the nearest-rank median and p90 (rank ⌈p·n⌉), to one decimal."""
    n = len(values)
    if n == 0:
        return {"count": 0, "mean": None, "median": None, "p90": None}
    ordered = np.sort(values)
    return {
        "count": n,
        "mean": _round(float(ordered.sum()) / n),
        "median": _round(ordered[(n + 1) // 2 - 1]),  # integer ranks: no float rounding
        "p90": _round(ordered[(9 * n + 9) // 10 - 1]),
    }


def histogram(values: Floats) -> list[dict[str, Any]]:
    """How many of ``values`` fall in each of :data:`DURATION_BUCKETS`, zeros included."""
    bounds = np.array([bound for _, bound in DURATION_BUCKETS])
    below = np.searchsorted(np.sort(values), bounds, side="left")  # values < each bound
    counts = np.diff(below, prepend=0)
    return [
        {"bucket": label, "count": int(n)}
        for (label, _), n in zip(DURATION_BUCKETS, counts, strict=True)
    ]


def _round(value: Any) -> float:
    return round(float(value), 1)
