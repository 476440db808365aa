"""Step: keep the ticket's SLA clocks and due times current (``postdesk.daemon.sla.clock``).

First the ticket's status label and priority are settled (``postdesk.daemon.sla.labels``):
a status changed by the system gets its state's label, an unknown priority the default.

Runs after the agent's commands, so a changed priority or category re-selects the policy,
and before the notifications, which show the due time.
"""

from __future__ import annotations

from postdesk.daemon.pipeline import MessageContext
from postdesk.daemon.sla.clock import refresh
from postdesk.daemon.sla.labels import settle


def run(ctx: MessageContext) -> None:
    """Record a public agent reply or a status change and recompute the due times."""
    if ctx.ticket is None or ctx.message is None:
        return
    settle(ctx.services.settings, ctx.ticket)
    ctx.sla = refresh(
        ctx.session,
        ctx.services.sla,
        ctx.ticket,
        ctx.services.clock(),
        public_reply=_public_reply(ctx),
        new=ctx.created,
    )


def _public_reply(ctx: MessageContext) -> bool:
    """True when this message is an agent's answer that the customer will receive."""
    if ctx.agent is None or ctx.is_auto or ctx.created or ctx.message is None:
        return False
    files = any(not a.inline for a in ctx.parsed.attachments)
    return not ctx.message.internal and bool(ctx.reply_text or files)
