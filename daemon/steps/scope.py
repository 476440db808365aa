"""Step: an agent believed on a token is believed for that token's ticket only (issue 13).

A token that threads its mail into another ticket (a leaked Message-ID plus a reference to a
stranger's mail) does not authenticate there: the mail is handled as an unverified agent's,
threaded again as a customer's, and the agents are alerted.
"""

from __future__ import annotations

import logging

from postdesk.daemon.agents.binding import covers
from postdesk.daemon.pipeline import MessageContext
from postdesk.daemon.steps import thread

log = logging.getLogger("postdesk.auth")


def run(ctx: MessageContext) -> None:
    """Withdraw a token's authentication outside its own ticket."""
    if ctx.agent is None or ctx.token_ticket is None:
        return
    if ctx.ticket is not None and covers(ctx.session, ctx.token_ticket, ctx.ticket):
        return
    where = f"ticket #{ctx.ticket.number}" if ctx.ticket is not None else "a new ticket"
    detail = f"token for ticket #{ctx.token_ticket} does not cover {where}"
    log.warning("%s from %s not believed: %s", ctx.parsed.message_id, ctx.agent.email, detail)
    ctx.notes.append(f"unverified mail from agent address {ctx.agent.email}: {detail}")
    ctx.agent, ctx.token_ticket = None, None
    ctx.unverified_agent, ctx.auth_detail = True, detail
    ctx.ticket, ctx.follows = None, None
    thread.run(ctx)
