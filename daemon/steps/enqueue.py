"""Step: queue the mails the steps before decided on (acknowledgement, agents' notifications).

They go into the outbox together (``outbox.enqueue_all``): one INSERT per table for the lot,
in the order the steps added them, with the same caps as one by one. Notifications held for
the plugins' lookups are remembered in ``ctx.held``, to be completed after the commit
(``steps.facts``).
"""

from __future__ import annotations

from postdesk.daemon.outbound.held import HeldMail
from postdesk.daemon.outbound.outbox import enqueue_all
from postdesk.daemon.pipeline import MessageContext


def run(ctx: MessageContext) -> None:
    """Queue ``ctx.mails`` about the message's ticket in its transaction."""
    if not ctx.mails or ctx.ticket is None:
        return
    queued = enqueue_all(ctx.session, ctx.services, ctx.ticket, ctx.mails)
    if ctx.held is None:
        return
    for mail, done in zip(ctx.mails, queued, strict=True):
        if done is not None and mail.held_until is not None:
            ctx.held.append(
                HeldMail(
                    done.id,
                    done.message_id,
                    mail.template,
                    mail.context,
                    mail.to,
                    mail.in_reply_to,
                    mail.references,
                    mail.attachments,
                )
            )
