"""Step: answer a person's new ticket with an acknowledgement carrying the ticket's tag.

Automatic mail never gets an answer (RFC 3834); the outbox applies the per-recipient limits.
"""

from __future__ import annotations

from postdesk.daemon.outbox import enqueue
from postdesk.daemon.pipeline import MessageContext
from postdesk.daemon.tags import format_tag
from postdesk.daemon.templating import CUSTOMER_ACKNOWLEDGEMENT


def run(ctx: MessageContext) -> None:
    """Queue the acknowledgement of a new ticket opened by a person."""
    if not ctx.created or ctx.is_auto or ctx.ticket is None:
        return
    ticket = ctx.ticket
    helpdesk = ctx.services.settings.helpdesk
    parsed = ctx.parsed
    enqueue(
        ctx.session,
        ctx.services,
        ticket=ticket,
        kind="acknowledgement",
        to=[ctx.sender],
        template=CUSTOMER_ACKNOWLEDGEMENT,
        context={
            "helpdesk": {"name": helpdesk.name, "address": helpdesk.address},
            "ticket": {
                "number": ticket.number,
                "subject": ticket.subject,
                "tag": format_tag(helpdesk.tag, ticket.number),
            },
            "customer_name": parsed.from_name,
        },
        in_reply_to=parsed.message_id,
        references=[*parsed.references, parsed.message_id],
        auto=True,
    )
