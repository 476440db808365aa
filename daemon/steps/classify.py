"""Step: the classifier's verdict on a message, and on the ticket the message opens.

``run`` (after authenticate, before the first database statement, so that loading or applying
a model never holds the database's write lock) asks the current models (``daemon/classify``)
whether the message is spam and which category it belongs to; mail from an authenticated agent
is never judged. The store step writes the verdict with a ticket this message opens
(:func:`ticket_columns`, :func:`ticket_events`): a spam ticket is marked and closed (no
acknowledgement, no notification, no assignee; nothing is deleted, ``#ham`` releases it) and
the category routes the ticket. A reply into an existing ticket never changes it: the verdict
only decides about new tickets.
"""

from __future__ import annotations

from postdesk.daemon.classify.judge import judge
from postdesk.daemon.classify.loader import cache_for
from postdesk.daemon.pipeline import EventEntry, MessageContext

ACTOR = "postdesk"


def run(ctx: MessageContext) -> None:
    """Record the models' verdict on this message in the context."""
    if ctx.agent is not None:
        return
    verdict = judge(cache_for(ctx.services.settings.data_dir), ctx.parsed)
    ctx.spam, ctx.spam_score = verdict.spam, verdict.spam_score
    ctx.category, ctx.category_score = verdict.category, verdict.category_score


def _judged(ctx: MessageContext) -> bool:
    return ctx.spam_score is not None or ctx.category_score is not None


def ticket_columns(ctx: MessageContext) -> dict[str, object]:
    """The verdict as column values of the ticket this message opens (none without models)."""
    if not _judged(ctx):
        return {}
    columns: dict[str, object] = {
        "spam_score": ctx.spam_score,
        "category_score": ctx.category_score,
    }
    if ctx.category is not None:
        columns["category"] = ctx.category
    if ctx.spam:
        columns.update(spam=True, status="closed")
    return columns


def ticket_events(ctx: MessageContext) -> list[EventEntry]:
    """The event log entries of the verdict on the ticket this message opened."""
    if not _judged(ctx):
        return []
    detail = {"spam_score": ctx.spam_score, "category": ctx.category, "score": ctx.category_score}
    entries: list[EventEntry] = [("classified", detail, ACTOR)]
    if ctx.spam:
        entries.append(("spam", {"by": "classifier", "spam_score": ctx.spam_score}, ACTOR))
    return entries
