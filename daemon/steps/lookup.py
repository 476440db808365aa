"""Step: start the plugins' contact and order lookups, and remember the ticket as it was.

Under serve the lookups are asked of the plugins process (``PluginRunner.lookup``): the worker
spends no time on them. Otherwise they run in the background (``postdesk.plugins.runner``:
a timeout per call, a brief cache) while the following steps store the message. Either way
the ``facts`` step collects the answers. The watched fields of an existing ticket are kept so
that the ``events`` step can report what changed.
"""

from __future__ import annotations

from postdesk.daemon.pipeline import MessageContext
from postdesk.plugins.facts import lookup_text

WATCHED = ("status", "priority", "assignee", "category")


def run(ctx: MessageContext) -> None:
    """Record the ticket's watched fields; start lookups for mail that will notify agents."""
    if ctx.ticket is not None:
        ctx.ticket_before = {name: getattr(ctx.ticket, name) for name in WATCHED}
    if ctx.agent is not None or ctx.unverified_agent or ctx.is_auto or ctx.rating is not None:
        return
    text = lookup_text(ctx.parsed.subject, ctx.parsed.new_text)
    ctx.facts_pending = ctx.services.plugins.lookup(ctx.sender, text, ctx.spool_id)
