"""Step: record the plugin events of this message, fired once its transaction commits.

Snapshots are taken now (inside the transaction, from what this message stored) and written
to the plugin event journal (:mod:`postdesk.plugins.journal`) in the same transaction; the
hooks are called only after commit (``MessageContext.after_commit``), in the background, so a
slow or failing plugin never delays mail and never hears of a change that was rolled back,
and a call cut short by a crash is run again with the same ``event_id`` (R-17).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from postdesk.daemon.pipeline import MessageContext
from postdesk.daemon.steps.lookup import WATCHED
from postdesk.daemon.store.views import message_dict, ticket_dict
from postdesk.models.schema import Participant, Ticket
from postdesk.plugins.journal import EVENT_HOOKS
from postdesk.plugins.snapshots import Snapshot, freeze

_PARTICIPANTS = cast(Table, Participant.__table__)
_ROLES = (  # built once: (email, role) of a ticket's participants, as the relationship orders them
    select(_PARTICIPANTS.c.email, _PARTICIPANTS.c.role)
    .where(_PARTICIPANTS.c.ticket_id == bindparam("ticket"))
    .order_by(_PARTICIPANTS.c.id)
)


def run(ctx: MessageContext) -> None:
    """Record the events this message caused; they are fired after commit."""
    runner = ctx.services.plugins
    if ctx.ticket is None or not runner.implemented(*EVENT_HOOKS):
        return
    ticket = ticket_snapshot(ctx.session, ctx.ticket, ctx.services.settings.helpdesk.tag)
    calls: list[tuple[str, dict[str, Any]]] = []
    notices: list[tuple[str, dict[str, Any]]] = []
    changes = _changes(ctx)
    if ctx.created:
        calls.append(("postdesk_ticket_created", {"ticket": ticket}))
        notices.append(("ticket.created", {}))
        if ctx.ticket.assignee:
            notices.append(("ticket.assigned", {"assignee": ctx.ticket.assignee}))
    elif changes:
        calls += updated_calls(ticket, changes)
        if "assignee" in changes:
            notices.append(("ticket.assigned", {"assignee": ctx.ticket.assignee}))
    if ctx.message is not None:
        if runner.implemented("postdesk_message_added"):  # the snapshot costs: only when heard
            message = freeze(message_dict(ctx.message))
            calls.append(("postdesk_message_added", {"ticket": ticket, "message": message}))
        notices.append(("message.added", {"message_id": ctx.message.message_id}))
    if ctx.unverified_agent:
        notices.append(("alert.spoofed_agent", {"from": ctx.sender, "reason": ctx.auth_detail}))

    calls += [
        ("postdesk_notify", {"event": event, "ticket": ticket, "detail": freeze(detail)})
        for event, detail in notices
    ]
    owed = runner.journal.record(ctx.session, runner.heard(calls))
    ctx.after_commit.append(lambda: runner.journal.fire(owed))


def ticket_snapshot(session: Session, ticket: Ticket, tag: str) -> Snapshot:
    """``ticket`` as plugins receive it, read within ``session``'s transaction: its pending
    changes are written first, and its participants read with one plain query (loading them
    as ORM objects costs the worker several times more)."""
    session.flush()
    rows = session.connection().execute(_ROLES, {"ticket": ticket.id})
    participants = [(email, role) for email, role in rows]
    snapshot: Snapshot = freeze(ticket_dict(ticket, tag, False, participants=participants))
    return snapshot


def updated_calls(
    ticket: Snapshot, changes: dict[str, list[Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """The hook calls that announce ``changes`` (field -> [old, new]) of ``ticket``."""
    return [
        ("postdesk_ticket_updated", {"ticket": ticket, "changes": freeze(changes)}),
        (
            "postdesk_notify",
            {"event": "ticket.updated", "ticket": ticket, "detail": freeze({"changes": changes})},
        ),
    ]


def _changes(ctx: MessageContext) -> dict[str, list[Any]]:
    """Watched fields that differ from when the ticket was found: name -> [old, new]."""
    before = ctx.ticket_before or {}
    assert ctx.ticket is not None
    return {
        name: [before[name], getattr(ctx.ticket, name)]
        for name in WATCHED
        if name in before and before[name] != getattr(ctx.ticket, name)
    }
