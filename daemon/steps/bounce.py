"""Step: delivery reports about our mail mark the failed addresses bouncing (R-29, R-38);
a person's reply from a bouncing address to mail we sent clears the flag.

A new mail from a bouncing address does not clear it (a forged or receive-dead address can
still send); a reply referencing one of our HMAC Message-IDs proves the mailbox gets our mail.

A report is believed only when the mail it reports carries one of our HMAC Message-IDs, and only
for the recipients that mail was sent to; it is threaded to that mail's ticket as a reply.
"""

from __future__ import annotations

import dataclasses
import json

from sqlalchemy import select

from postdesk.daemon.mail.dsn import read_report
from postdesk.daemon.pipeline import MessageContext
from postdesk.daemon.store.bounces import clear_bouncing, mark_bouncing
from postdesk.models.schema import OutboxItem


def run(ctx: MessageContext) -> None:
    """Mark or clear bouncing contacts from this message."""
    if ctx.parsed.report_type == "delivery-status":
        report = read_report(ctx.raw)
        original = report.original_message_id if report else None
        if report is None or original is None or not ctx.services.tokens.is_ours(original):
            return
        failed = [a for a in report.failed if a in _recipients_of(ctx, original)]
        mark_bouncing(ctx.session, failed, f"delivery report {ctx.parsed.message_id}")
        ctx.notes.append(f"delivery report about {original}: failed {', '.join(failed) or '-'}")
        ctx.parsed = dataclasses.replace(
            ctx.parsed, in_reply_to=(*ctx.parsed.in_reply_to, original)
        )
        return
    if (
        not ctx.is_auto
        and ctx.sender
        and _replies_to_us(ctx)
        and clear_bouncing(ctx.session, ctx.sender)
    ):
        ctx.notes.append(f"{ctx.sender} wrote again: no longer bouncing")


def _replies_to_us(ctx: MessageContext) -> bool:
    """True when the message references a mail we sent (one of our HMAC Message-IDs)."""
    tokens = ctx.services.tokens
    return any(tokens.is_ours(mid) for mid in (*ctx.parsed.in_reply_to, *ctx.parsed.references))


def _recipients_of(ctx: MessageContext, message_id: str) -> set[str]:
    """The envelope recipients of the outbox mail with ``message_id``."""
    rows = ctx.session.scalars(
        select(OutboxItem.recipients).where(OutboxItem.message_id == message_id)
    )
    return {address.lower() for row in rows for address in json.loads(row)}
