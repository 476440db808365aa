"""Step: queue the mails the steps before decided on (acknowledgement, agents' notifications).

They go into the outbox together (``outbox.enqueue_all``): one INSERT per table for the lot,
in the order the steps added them, with the same caps as one by one.
"""

from __future__ import annotations

from postdesk.daemon.outbound.outbox import enqueue_all
from postdesk.daemon.pipeline import MessageContext


def run(ctx: MessageContext) -> None:
    """Queue ``ctx.mails`` about the message's ticket in its transaction."""
    if ctx.mails and ctx.ticket is not None:
        enqueue_all(ctx.session, ctx.services, ctx.ticket, ctx.mails)
