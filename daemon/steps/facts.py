"""Step: take what the plugins' lookups found, and let a new ticket's contact set its priority.

The lookups started in the ``lookup`` step ran while the message was stored. If they have
answered (or were answered from a cache), their facts go into this message's notifications
now. If not, nothing waits for them: the acknowledgement and the ticket commit at once, the
agent notifications are queued held (``daemon/outbound/held.py``), and after the commit they
are rendered again with the facts once the lookups answer or time out (a plugin that answers
late is left out), and released in a transaction shared with the other completions ready at
that moment (``Releases`` in ``daemon/outbound/releases.py``). They are rendered before that
transaction, which then holds the write lock only for its UPDATEs (:func:`_completion`).

A contact card may carry a ``priority`` (the CRM maps its tier to one, ``[plugins.crm]
tier_priority``): a new ticket is raised to it, then or in :func:`_complete`, where the mails
are rendered in the transaction that raises it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from postdesk.daemon.outbound.context import ticket_info
from postdesk.daemon.outbound.held import HeldMail, complete, release, render_held
from postdesk.daemon.pipeline import MessageContext, log_event
from postdesk.daemon.services import Services
from postdesk.daemon.sla.clock import refresh
from postdesk.daemon.steps.events import record_heard, updated_calls
from postdesk.daemon.store.slaview import due_text
from postdesk.models.schema import PRIORITIES, Event, Ticket
from postdesk.plugins.journal import OwedCall

ACTOR = "plugins"


def run(ctx: MessageContext) -> None:
    """Fill ``ctx.facts`` and raise a new ticket's priority to its contact's, or, while the
    lookups still run, hold the notifications and complete them after the commit."""
    facts = ctx.services.plugins.soon(ctx.facts_pending)
    if facts is None:
        if ctx.ticket is not None:
            _hold(ctx)
        return
    ctx.facts = facts
    if ctx.created and ctx.ticket is not None:
        change = _priority_change(ctx.ticket, facts)
        if change is not None:
            log_event(ctx, "priority", change, ACTOR)
            ctx.ticket.priority = str(change["to"])


def _hold(ctx: MessageContext) -> None:
    """Have the ``notify`` step hold its mails; complete them once the lookups are done."""
    assert ctx.ticket is not None and ctx.facts_pending is not None
    if ctx.ticket.id is None:
        ctx.session.flush()
    ctx.held = []
    services, engine = ctx.services, ctx.session.get_bind()
    completion = functools.partial(_completion, services, ctx.ticket.id, ctx.created, ctx.held)

    def found(facts: dict[str, Any]) -> None:  # in a thread, once the lookups are done
        services.releases.write(engine, completion(facts))

    pending = ctx.facts_pending
    ctx.after_commit.append(lambda: services.plugins.later(pending, found))


def _completion(
    services: Services, ticket_id: int, created: bool, held: list[HeldMail], facts: dict[str, Any]
) -> Callable[[Session], Callable[[], None]]:
    """What releases ``held`` with ``facts`` in a transaction of ``services.releases``. The
    mails are rendered now, in the calling thread, so that the transaction holds the database's
    write lock (SQLite has one, shared with the worker) only for its UPDATEs; but when the
    contact may raise a new ticket's priority, the mails show the ticket as the transaction
    finds it, so they are rendered there (:func:`_complete`)."""
    if created and _wanted_priority(facts) is not None:
        return functools.partial(_complete, services, ticket_id, created, held, facts)
    changes = {"plugin_facts": facts}
    rendered = [render_held(services, mail, changes) for mail in held]

    def write(session: Session) -> Callable[[], None]:
        for mail in rendered:
            release(session, services, mail)
        return _nothing

    return write


def _nothing() -> None:
    """Nothing to run after the commit (no plugin event to fire)."""


def _complete(
    services: Services,
    ticket_id: int,
    created: bool,
    held: list[HeldMail],
    facts: dict[str, Any],
    session: Session,
) -> Callable[[], None]:
    """In ``session`` (after the message's commit): raise a new ticket's priority and release
    its held notifications with the facts; returns what tells the plugins of the raise once
    this commits. The ticket is read only when its contact asks for a priority."""
    owed: list[OwedCall] = []
    changes: dict[str, object] = {"plugin_facts": facts}
    wanted = created and _wanted_priority(facts) is not None
    ticket = session.get(Ticket, ticket_id) if wanted else None
    change = _priority_change(ticket, facts) if ticket is not None else None
    if ticket is not None and change is not None:
        session.add(
            Event(
                ticket_id=ticket_id,
                at=services.clock(),
                actor=ACTOR,
                kind="priority",
                detail=json.dumps(change),
            )
        )
        ticket.priority = str(change["to"])
        sla = refresh(session, services.sla, ticket, services.clock())
        changes |= {
            "ticket": ticket_info(services.settings, ticket),
            "sla_due": due_text(sla, ticket),
        }
        owed = _announce(services, session, ticket, [change["from"], change["to"]])
    for mail in held:
        complete(session, services, mail, changes)
    session.flush()
    return functools.partial(services.plugins.journal.fire, owed)


def _announce(
    services: Services, session: Session, ticket: Ticket, priority: list[Any]
) -> list[OwedCall]:
    """Record, in ``session``'s transaction, the plugin events of a priority raised late."""
    calls = updated_calls({"priority": priority})
    tag = services.settings.helpdesk.tag
    return record_heard(session, services.plugins, ticket, tag, calls)


def _priority_change(ticket: Ticket, facts: dict[str, Any]) -> dict[str, object] | None:
    """The priority change the contact card in ``facts`` asks of ``ticket``, if any."""
    wanted, current = _wanted_priority(facts), ticket.priority
    if wanted is not None and PRIORITIES.index(wanted) > PRIORITIES.index(current):
        return {"from": current, "to": wanted, "tier": facts["contact"].get("tier")}
    return None


def _wanted_priority(facts: dict[str, Any]) -> str | None:
    """The priority the contact card in ``facts`` asks for, if it names one."""
    contact = facts.get("contact")
    wanted = contact.get("priority") if isinstance(contact, dict) else None
    return wanted if wanted in PRIORITIES else None
