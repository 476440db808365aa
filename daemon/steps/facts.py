"""Step: collect what the plugins' lookups found, and let a new ticket's contact set its priority.

The lookups started in the ``lookup`` step ran while the message was stored; here their
answers are awaited (at most the lookup timeout: mail is never held longer than that, and a
plugin that answers late is simply left out). A contact card may carry a ``priority`` (the
CRM maps its tier to one, ``[plugins.crm] tier_priority``): a new ticket is raised to it.
"""

from __future__ import annotations

from postdesk.daemon.pipeline import MessageContext, log_event
from postdesk.models.schema import PRIORITIES

ACTOR = "plugins"


def run(ctx: MessageContext) -> None:
    """Fill ``ctx.facts``; raise a new ticket's priority to its contact's."""
    ctx.facts = ctx.services.plugins.facts(ctx.facts_pending)
    contact = ctx.facts.get("contact")
    if not ctx.created or ctx.ticket is None or not isinstance(contact, dict):
        return
    wanted = contact.get("priority")
    current = ctx.ticket.priority
    if wanted in PRIORITIES and PRIORITIES.index(wanted) > PRIORITIES.index(current):
        log_event(
            ctx, "priority", {"from": current, "to": wanted, "tier": contact.get("tier")}, ACTOR
        )
        ctx.ticket.priority = str(wanted)
