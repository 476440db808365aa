"""Step: run the commands at the top of an authenticated agent's reply (SPEC section 5).

Each command changes the ticket and writes an event naming the agent; a wrong command is
collected in ``ctx.agent_errors`` (mailed back by the relay step) and the rest still runs.
What remains of the reply, without commands and quoted history, becomes ``ctx.reply_text``
for the relay step, unless ``#note`` (or ``#spam``) makes the whole reply internal.
"""

from __future__ import annotations

from postdesk.daemon.agents.actions import ACTIONS
from postdesk.daemon.agents.binding import command_refusal
from postdesk.daemon.agents.commands import parse_reply
from postdesk.daemon.outbound.templating import one_line
from postdesk.daemon.pipeline import MessageContext


def run(ctx: MessageContext) -> None:
    """Apply an authenticated agent's commands and prepare the text to relay."""
    if ctx.agent is None or ctx.is_auto or ctx.ticket is None or ctx.message is None:
        return  # an agent's auto-reply (out of office) neither commands nor answers
    reply = parse_reply(ctx.parsed.new_text)
    ctx.agent_errors.extend(reply.errors)
    canned: list[str] = []
    for command in reply.commands:
        error = command_refusal(ctx.token_ticket, command.name) or ACTIONS[command.name](
            ctx, command, canned
        )
        if error:
            ctx.agent_errors.append(f"{one_line(command.line, 100)!r}: {error}")
    if reply.has("note") or reply.has("spam"):
        ctx.message.internal = True
        return
    if ctx.ticket.status == "new":
        ctx.ticket.status = "open"
    parts = [reply.body] if reply.body.strip() else []
    ctx.reply_text = "\n\n".join([*parts, *canned])
