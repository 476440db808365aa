"""Step: delivery reports about our mail mark the failed addresses bouncing (R-29, R-38), and so
do bounces without a report (qmail, Exim without DSN, Lotus Notes: see ``mail/plain_bounce.py``)
that return our mail, unless they only warn of a delay; read receipts (MDN) about our mail
record when it was first displayed (its ``read_at``); a person's reply from a bouncing address
to mail we sent clears the flag.

A new mail from a bouncing address does not clear it (a forged or receive-dead address can
still send); a reply referencing one of our HMAC Message-IDs proves the mailbox gets our mail.

A report is believed only when the mail it reports carries one of our HMAC Message-IDs, and only
for the recipients that mail was sent to; a read receipt only from one of those recipients.
Either is threaded to that mail's ticket as an automatic reply: no new ticket, no answer, no
reopening.
"""

from __future__ import annotations

import dataclasses
import json

from sqlalchemy import select, update

from postdesk.daemon.mail.dsn import read_receipt, read_report
from postdesk.daemon.mail.plain_bounce import (
    BOUNCE_SUBJECT,
    SYSTEM_SENDERS,
    read_plain_bounce,
)
from postdesk.daemon.pipeline import MessageContext
from postdesk.daemon.steps.screen import null_return_path
from postdesk.daemon.store.bounces import clear_bouncing, mark_bouncing
from postdesk.models.schema import Message, OutboxItem


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
    if ctx.parsed.report_type == "disposition-notification":
        _record_read(ctx)
        return
    if ctx.parsed.report_type is None and _from_mail_system(ctx):
        _read_plain_bounce(ctx)
        return
    if (
        not ctx.is_auto
        and ctx.sender
        and _replies_to_us(ctx)
        and clear_bouncing(ctx.session, ctx.sender)
    ):
        ctx.notes.append(f"{ctx.sender} wrote again: no longer bouncing")


def _from_mail_system(ctx: MessageContext) -> bool:
    """True for mail a mail system sent about mail it could not deliver: from MAILER-DAEMON or
    postmaster, or with an empty return path and a bounce's subject."""
    if ctx.sender.partition("@")[0] in SYSTEM_SENDERS:
        return True
    return null_return_path(ctx) and BOUNCE_SUBJECT.search(ctx.parsed.subject) is not None


def _read_plain_bounce(ctx: MessageContext) -> None:
    """A bounce without a report that returns our mail joins that mail's ticket; the
    recipients of that mail it names are marked bouncing (the only one, when it names none),
    unless it only warns of a delay."""
    bounce = read_plain_bounce(ctx.raw, ctx.parsed.subject)
    tokens = ctx.services.tokens
    ours = [mid for mid in bounce.message_ids if tokens.is_ours(mid)] if bounce else []
    if bounce is None or not ours:
        return
    original = ours[0]
    if bounce.delay_only:
        ctx.notes.append(f"delay warning about {original}")
    else:
        recipients = _recipients_of(ctx, original)
        failed = [address for address in bounce.named if address in recipients]
        if not failed and len(recipients) == 1:
            failed = sorted(recipients)
        mark_bouncing(ctx.session, failed, f"bounce {ctx.parsed.message_id}")
        ctx.notes.append(f"bounce about {original}: failed {', '.join(failed) or '-'}")
    ctx.parsed = dataclasses.replace(ctx.parsed, in_reply_to=(*ctx.parsed.in_reply_to, original))


def _record_read(ctx: MessageContext) -> None:
    """Set ``read_at`` on the mail a believable "displayed" receipt is about; thread it there."""
    receipt = read_receipt(ctx.raw)
    tokens = ctx.services.tokens
    named = [receipt.original_message_id] if receipt and receipt.original_message_id else []
    original = next((m for m in (*named, *ctx.parsed.in_reply_to) if tokens.is_ours(m)), None)
    if receipt is None or original is None:
        return
    ctx.parsed = dataclasses.replace(ctx.parsed, in_reply_to=(*ctx.parsed.in_reply_to, original))
    if not receipt.displayed or ctx.sender.lower() not in _recipients_of(ctx, original):
        return
    ctx.session.execute(
        update(Message)
        .where(
            Message.message_id == original,
            Message.direction == "out",
            Message.read_at.is_(None),
        )
        .values(read_at=ctx.services.clock())
    )
    ctx.notes.append(f"read receipt from {ctx.sender} for {original}")


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
