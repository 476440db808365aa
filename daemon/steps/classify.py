"""Steps: the classifier's verdict on a message, and on the ticket the message opens.

``run`` (after authenticate, before the first database statement, so that loading or applying
a model never holds the database's write lock) asks the current models (``daemon/classify``)
whether the message is spam and which category it belongs to; mail from an authenticated agent
is never judged. ``mark`` (after store) applies the verdict to a ticket this message created: a
spam ticket is marked and closed (no acknowledgement, no notification, no assignee; nothing is
deleted, ``#ham`` releases it) and the category routes the ticket. A reply into an existing
ticket never changes it: the verdict only decides about new tickets.
"""

from __future__ import annotations

from postdesk.daemon.classify.judge import judge
from postdesk.daemon.classify.loader import cache_for
from postdesk.daemon.pipeline import MessageContext, log_event

ACTOR = "postdesk"


def run(ctx: MessageContext) -> None:
    """Record the models' verdict on this message in the context."""
    if ctx.agent is not None:
        return
    verdict = judge(cache_for(ctx.services.settings.data_dir), ctx.parsed)
    ctx.spam, ctx.spam_score = verdict.spam, verdict.spam_score
    ctx.category, ctx.category_score = verdict.category, verdict.category_score


def mark(ctx: MessageContext) -> None:
    """Put the verdict on the ticket this message created."""
    ticket = ctx.ticket
    if not ctx.created or ticket is None or (ctx.spam_score is None and ctx.category_score is None):
        return
    ticket.spam_score, ticket.category_score = ctx.spam_score, ctx.category_score
    if ctx.category is not None:
        ticket.category = ctx.category
    detail = {"spam_score": ctx.spam_score, "category": ctx.category, "score": ctx.category_score}
    log_event(ctx, "classified", detail, actor=ACTOR)
    if ctx.spam:
        ticket.spam, ticket.status = True, "closed"
        log_event(ctx, "spam", {"by": "classifier", "spam_score": ctx.spam_score}, actor=ACTOR)
