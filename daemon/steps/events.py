"""Step: record the plugin events of this message, fired once its transaction commits.

Snapshots are taken now (inside the transaction, from what this message stored, as plain data
that the journal makes read-only only when this process fires the calls itself) and written
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
from postdesk.daemon.store.direct import Direct
from postdesk.daemon.store.views import message_dict, ticket_dict
from postdesk.models.schema import Participant, Ticket
from postdesk.plugins.journal import EVENT_HOOKS, OwedCall
from postdesk.plugins.runner import PluginRunner

_PARTICIPANTS = cast(Table, Participant.__table__)
# (email, role) of a ticket's participants, as the relationship orders them: built once, run
# straight on the DBAPI cursor (see store/direct.py), as it is for every message.
_ROLES = Direct(
    select(_PARTICIPANTS.c.email, _PARTICIPANTS.c.role)
    .where(_PARTICIPANTS.c.ticket_id == bindparam("ticket"))
    .order_by(_PARTICIPANTS.c.id)
)


def run(ctx: MessageContext) -> None:
    """Record the events this message caused; they are fired after commit."""
    runner = ctx.services.plugins
    if ctx.ticket is None or not runner.implemented(*EVENT_HOOKS):
        return
    calls: list[tuple[str, dict[str, Any]]] = []  # each given the ticket's snapshot if heard
    notices: list[tuple[str, dict[str, Any]]] = []
    changes = _changes(ctx)
    if ctx.created:
        calls.append(("postdesk_ticket_created", {}))
        notices.append(("ticket.created", {}))
        if ctx.ticket.assignee:
            notices.append(("ticket.assigned", {"assignee": ctx.ticket.assignee}))
    elif changes:
        calls += updated_calls(changes)
        if "assignee" in changes:
            notices.append(("ticket.assigned", {"assignee": ctx.ticket.assignee}))
    if ctx.message is not None:
        if runner.implemented("postdesk_message_added"):  # the snapshot costs: only when heard
            calls.append(("postdesk_message_added", {"message": message_dict(ctx.message)}))
        notices.append(("message.added", {"message_id": ctx.message.message_id}))
    if ctx.unverified_agent:
        notices.append(("alert.spoofed_agent", {"from": ctx.sender, "reason": ctx.auth_detail}))

    calls += [("postdesk_notify", {"event": event, "detail": detail}) for event, detail in notices]
    owed = record_heard(ctx.session, runner, ctx.ticket, ctx.services.settings.helpdesk.tag, calls)
    ctx.after_commit.append(lambda: runner.journal.fire(owed))


def record_heard(
    session: Session,
    runner: PluginRunner,
    ticket: Ticket,
    tag: str,
    calls: list[tuple[str, dict[str, Any]]],
) -> list[OwedCall]:
    """Record, in ``session``'s transaction, those of ``calls`` (hook, arguments but the
    ticket) that some plugin hears, each given ``ticket``'s snapshot: taken only when one is
    heard (a reply no plugin hears costs no snapshot). Returns the calls to fire after commit."""
    heard = runner.heard(calls)
    if not heard:
        return []
    snapshot = ticket_data(session, ticket, tag)
    return runner.journal.record(
        session, [(hook, {"ticket": snapshot, **arguments}) for hook, arguments in heard]
    )


def ticket_data(session: Session, ticket: Ticket, tag: str) -> dict[str, Any]:
    """``ticket`` as plugins receive it (once made read-only), read within ``session``'s
    transaction: its pending changes are written first, and its participants read with one
    plain query (loading them as ORM objects costs the worker several times more)."""
    session.flush()
    cursor = _ROLES.execute(session.connection(), {"ticket": ticket.id})
    participants = [(email, role) for email, role in cursor.fetchall()]
    cursor.close()
    return ticket_dict(ticket, tag, False, participants=participants)


def updated_calls(changes: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The hook calls (but the ticket) that announce ``changes`` (field -> [old, new])."""
    return [
        ("postdesk_ticket_updated", {"changes": changes}),
        ("postdesk_notify", {"event": "ticket.updated", "detail": {"changes": changes}}),
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
