"""Step: start the plugins' contact and order lookups, and remember the ticket as it was.

The lookups run in the background (``postdesk.plugins.runner``: bounded concurrency, a
timeout per call, a brief cache) while the following steps store the message; the ``facts``
step collects the answers. Lookups for the next messages waiting in the spool start too, so
a slow shop answers many messages in parallel instead of one at a time. The watched fields
of an existing ticket are kept so that the ``events`` step can report what changed.
"""

from __future__ import annotations

import functools

from postdesk.daemon.pipeline import MessageContext
from postdesk.plugins.prefetch import lookahead, lookup_text

WATCHED = ("status", "priority", "assignee", "category")
SPOOL_WAITING = "spool/new"  # where runtime.build_runtime's Spool keeps waiting messages
PREFETCH_DEPTH = 32  # spooled messages looked ahead at
PEEK_BYTES = 65536  # of each: the headers and the start of the text


def run(ctx: MessageContext) -> None:
    """Record the ticket's watched fields; start lookups for mail that will notify agents."""
    if ctx.ticket is not None:
        ctx.ticket_before = {name: getattr(ctx.ticket, name) for name in WATCHED}
    if ctx.agent is not None or ctx.unverified_agent or ctx.is_auto or ctx.rating is not None:
        return
    text = lookup_text(ctx.parsed.subject, ctx.parsed.new_text)
    plugins = ctx.services.plugins
    ctx.facts_pending = plugins.lookup(ctx.sender, text)
    waiting = ctx.services.settings.data_dir / SPOOL_WAITING
    plugins.prefetch(functools.partial(lookahead, waiting, PREFETCH_DEPTH, PEEK_BYTES))
