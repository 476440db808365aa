"""Step: a customer's answer to the satisfaction (CSAT) question is a rating, not a new request.

When the ticket is solved or closed, the sender is its requester or a Cc collaborator, and the
first word of the new text is a rating (1-5, or good = 5 / bad = 1), the rating is recorded and
the store step leaves the status alone. Anything else reopens the ticket as usual.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from postdesk.daemon.pipeline import MessageContext, log_event
from postdesk.models.schema import Participant

WORDS = {"1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "good": 5, "bad": 1}
CUSTOMER_ROLES = ("requester", "cc")


def run(ctx: MessageContext) -> None:
    """Record the rating carried by this message, if it is one."""
    ticket = ctx.ticket
    if ticket is None or ticket.status not in ("solved", "closed") or ctx.is_auto:
        return
    if ctx.agent is not None or ticket.merged_into is not None or ticket.spam:
        return
    score = rating_of(ctx.parsed.new_text, ctx.services.settings.workflow.rating_words)
    if score is None or not _is_customer(ctx):
        return
    ticket.rating = score
    ctx.rating = score
    log_event(ctx, "rated", {"rating": score})


def rating_of(text: str, extra: Mapping[str, int] | None = None) -> int | None:
    """The rating named by the first word of ``text`` ("5", "Good!", "bad."), or None.

    ``extra`` adds the team's own words (``[workflow] rating_words``, e.g. "Satisfactory").
    """
    words = text.split(maxsplit=1)
    if not words:
        return None
    word = words[0].strip(".,;:!?").lower()
    own = {key.lower(): value for key, value in (extra or {}).items()}
    return own.get(word, WORDS.get(word))


def _is_customer(ctx: MessageContext) -> bool:
    assert ctx.ticket is not None
    role = ctx.session.execute(
        select(Participant.role).where(
            Participant.ticket_id == ctx.ticket.id, Participant.email == ctx.sender
        )
    ).scalar_one_or_none()
    return role in CUSTOMER_ROLES
