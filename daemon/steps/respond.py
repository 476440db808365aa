"""Step: answer a person's new ticket with an acknowledgement carrying the ticket's tag.

Automatic mail never gets an answer (RFC 3834), nor does spam; the outbox applies the per-recipient limits.
"""

from __future__ import annotations

from postdesk.daemon.outbound.context import helpdesk_info, ticket_info
from postdesk.daemon.outbound.outbox import enqueue
from postdesk.daemon.outbound.templating import CUSTOMER_ACKNOWLEDGEMENT
from postdesk.daemon.pipeline import MessageContext
from postdesk.daemon.store.tags import bare_subject


def run(ctx: MessageContext) -> None:
    """Queue the acknowledgement of a new ticket opened by a person."""
    if not ctx.created or ctx.is_auto or ctx.ticket is None or ctx.ticket.spam:
        return
    settings, parsed = ctx.services.settings, ctx.parsed
    ticket = ticket_info(settings, ctx.ticket)
    # a misdirected reply ("Re: [Support #1] ...") opened this ticket: answer its bare subject
    ticket["subject"] = bare_subject(settings.helpdesk.tag, ctx.ticket.subject)
    enqueue(
        ctx.session,
        ctx.services,
        ticket=ctx.ticket,
        kind="acknowledgement",
        to=[ctx.ticket.requester],  # the sender, or the customer named by #requester
        template=CUSTOMER_ACKNOWLEDGEMENT,
        context={"helpdesk": helpdesk_info(settings), "ticket": ticket},
        in_reply_to=parsed.message_id,
        references=[*parsed.references, parsed.message_id],
        auto=True,
    )
