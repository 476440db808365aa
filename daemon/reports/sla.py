"""Promises: SLA compliance per policy for the tickets created in the window.

Each of a ticket's two targets (first response, resolution) ends up in exactly one state,
judged at the report's moment ``as_of`` (the end of the window, or now when that is earlier;
a target reached after it counts as not reached):

- ``met``: reached (reply sent, ticket solved) no later than its due time;
- ``breached``: reached after its due time, or not reached and the due time has passed;
- ``at_risk``: not reached, not yet due, but its warning time (``sla.warn_at``) has passed;
- ``open``: not reached and not yet at risk, or its clock is paused (pending: no due time).

``compliance`` is met / (met + breached), None when nothing was decided yet. One grouped
statement over ``ticket_sla``; spam and merged tickets and tickets without a policy are left out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.engine import Connection

from postdesk.daemon.reports.periods import Window, iso
from postdesk.daemon.reports.volume import not_spam
from postdesk.models.schema import Ticket, utcnow
from postdesk.models.sla import TicketSla

STATES = ("met", "breached", "at_risk", "open")
TARGETS = {
    "first_response": (
        TicketSla.first_response_met_at,
        TicketSla.first_response_due,
        TicketSla.first_response_warn_at,
    ),
    "resolution": (TicketSla.resolved_at, TicketSla.resolution_due, TicketSla.resolution_warn_at),
}


def compute(conn: Connection, window: Window) -> dict[str, Any]:
    """The SLA compliance figures of ``window``, per policy and in total."""
    as_of = min(window.end, utcnow())
    columns: list[Any] = [TicketSla.policy, func.count().label("tickets")]
    for target, (reached, due, warn) in TARGETS.items():
        for state, condition in _states(reached, due, warn, as_of).items():
            columns.append(func.sum(case((condition, 1), else_=0)).label(f"{target}.{state}"))
    rows = conn.execute(
        select(*columns)
        .join(Ticket, Ticket.id == TicketSla.ticket_id)
        .where(
            TicketSla.policy.is_not(None),
            Ticket.created_at >= window.start,
            Ticket.created_at < window.end,
            Ticket.merged_into.is_(None),
            not_spam(),
        )
        .group_by(TicketSla.policy)
        .order_by(TicketSla.policy)
    ).mappings()
    policies = [_policy(row) for row in rows]
    return {"as_of": iso(as_of), "policies": policies, "totals": _totals(policies)}


def _states(reached: Any, due: Any, warn: Any, as_of: datetime) -> dict[str, ColumnElement[bool]]:
    """The SQL condition of each state of one target; exactly one holds for every row.

    A target reached after ``as_of`` (a past window) counts as not reached yet.
    """
    done = and_(reached.is_not(None), reached <= as_of)
    waiting = or_(reached.is_(None), reached > as_of)
    pending = and_(waiting, or_(due.is_(None), due >= as_of))
    return {
        "met": and_(done, or_(due.is_(None), reached <= due)),
        "breached": or_(
            and_(done, due.is_not(None), reached > due),
            and_(waiting, due < as_of),
        ),
        "at_risk": and_(pending, due.is_not(None), warn.is_not(None), warn <= as_of),
        "open": and_(pending, or_(due.is_(None), warn.is_(None), warn > as_of)),
    }


def _policy(row: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"policy": row["policy"], "tickets": int(row["tickets"])}
    for target in TARGETS:
        found[target] = _target({state: int(row[f"{target}.{state}"] or 0) for state in STATES})
    return found


def _target(counts: dict[str, Any]) -> dict[str, Any]:
    decided = counts["met"] + counts["breached"]
    counts["compliance"] = round(counts["met"] / decided, 3) if decided else None
    return counts


def _totals(policies: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {"tickets": sum(p["tickets"] for p in policies)}
    for target in TARGETS:
        totals[target] = _target({s: sum(p[target][s] for p in policies) for s in STATES})
    return totals
