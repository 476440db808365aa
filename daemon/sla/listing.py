"""The agents' view of ``postdesk tickets``: overdue only, one assignee or priority, sorted.

Works on the JSON rows of ``tickets --json`` (each carries its ``sla`` object).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SORT_KEYS = ("due", "created", "updated")
OPEN_STATES = ("new", "open", "pending")
_NEVER = "9999"  # sorts after every ISO timestamp


def select_rows(
    rows: Sequence[dict[str, Any]],
    *,
    overdue: bool = False,
    assignee: str | None = None,
    priority: str | None = None,
    sort: str | None = None,
) -> list[dict[str, Any]]:
    """The rows kept by the filters, in the order asked for (ticket number otherwise).

    ``overdue`` keeps open tickets with a breached target; ``assignee`` is an address or
    ``nobody``; ``due`` sorts by the next unmet due time, soonest first.
    """
    kept = [row for row in rows if _wanted(row, overdue, assignee, priority)]
    if sort == "due":
        kept.sort(key=next_due)
    elif sort in ("created", "updated"):
        kept.sort(key=lambda row: str(row[f"{sort}_at"]))
    return kept


def next_due(row: dict[str, Any]) -> str:
    """The soonest unmet due time of a row (ISO), or a value that sorts last."""
    sla = row.get("sla") or {}
    dues = []
    if sla.get("first_response_due") and not sla.get("first_response_met_at"):
        dues.append(sla["first_response_due"])
    if sla.get("resolution_due") and not sla.get("resolution_met_at"):
        dues.append(sla["resolution_due"])
    return min(dues, default=_NEVER)


def _wanted(row: dict[str, Any], overdue: bool, assignee: str | None, priority: str | None) -> bool:
    if overdue and not (
        row["status"] in OPEN_STATES and (row.get("sla") or {}).get("state") == "breached"
    ):
        return False
    if assignee is not None:
        wanted = None if assignee.lower() in ("nobody", "none") else assignee.lower()
        if (row["assignee"] or None) != wanted:
            return False
    return priority is None or row["priority"] == priority.lower()
