"""Step: write the ticket (with the classifier's verdict when it opens one), contact,
participants, message, attachments and events."""

from __future__ import annotations

from datetime import datetime

from postdesk.daemon.pipeline import EventEntry, MessageContext, add_participant, log_events
from postdesk.daemon.sla.labels import default_label
from postdesk.daemon.steps import classify
from postdesk.daemon.steps.parse import StoredAttachment
from postdesk.daemon.store.db import add_row, add_ticket_row, insert_ignore, new_row
from postdesk.daemon.store.rawfiles import store_raw
from postdesk.models.schema import (
    Attachment,
    Contact,
    Message,
    Ticket,
)


def run(ctx: MessageContext) -> None:
    """Store the message in its ticket, opening or reopening the ticket as threading decided."""
    now = ctx.services.clock()
    parsed = ctx.parsed
    insert_ignore(
        ctx.connection,
        Contact.__table__,
        {"email": ctx.sender, "name": parsed.from_name, "created_at": now},
        ["email"],
    )
    events: list[EventEntry] = []  # written together, in this order
    if ctx.ticket is None:
        open_ticket(ctx, now)
        events.append(("created", {"requester": ctx.sender, "auto": ctx.auto_reason}, ""))
    elif ctx.keeps_status:
        pass  # a CSAT rating, or an agent's reply: the status changes only by command
    elif ctx.ticket.status in ("solved", "closed") and not ctx.is_auto:
        ctx.ticket.status = "open"
        ctx.ticket.solved_at = None
        ctx.reopened = True
        events.append(("reopened", {"by": ctx.sender}, ""))
    elif ctx.ticket.status == "pending" and not ctx.is_auto:
        ctx.ticket.status = "open"
    assert ctx.ticket is not None
    if not ctx.created:  # a new ticket was written with it: setting it again dirties it
        ctx.ticket.updated_at = now
    ctx.message = add_message(ctx)
    events.append(("received", {"message_id": parsed.message_id, "notes": ctx.notes}, ""))
    if ctx.created:
        events += classify.ticket_events(ctx)
    log_events(ctx, events)


def open_ticket(ctx: MessageContext, now: datetime) -> None:
    """Create a ticket for this message at ``now``, the next number, the sender as requester,
    the classifier's verdict (the caller logs its "created" and verdict events)."""
    verdict = classify.ticket_columns(ctx)
    status = str(verdict.pop("status", "new"))
    values = {
        **verdict,
        "subject": ctx.parsed.subject or "(no subject)",
        "requester": ctx.sender,
        "status": status,
        "status_label": default_label(ctx.services.settings, status),  # as the sla step would
        "follows": ctx.follows,
        "created_at": now,
        "updated_at": now,
    }
    ticket = new_row(Ticket, values)
    add_ticket_row(ctx.session, ticket, ctx.connection)  # numbered as it is written
    add_participant(ctx, ticket, ctx.sender, "requester")
    ctx.ticket, ctx.created = ticket, True
    add_collaborators(ctx, ticket)


def add_collaborators(ctx: MessageContext, ticket: Ticket) -> None:
    """The Cc of a new ticket become collaborators, except helpdesk and agent addresses."""
    settings = ctx.services.settings
    for address in ctx.parsed.cc:
        if address not in settings.helpdesk.addresses and settings.agent(address) is None:
            add_participant(ctx, ticket, address, "cc")


def add_message(ctx: MessageContext) -> Message:
    """Store the inbound message with its raw bytes (a large one as a file) and attachments."""
    parsed = ctx.parsed
    assert ctx.ticket is not None
    data_dir = ctx.services.settings.data_dir
    raw_sha256 = store_raw(data_dir, ctx.spooled, len(ctx.raw))  # read by the dedupe step
    values = {
        "ticket_id": ctx.ticket.id,
        "message_id": parsed.message_id,
        "dedupe_key": ctx.dedupe_key,
        "direction": "in",
        "author": ctx.sender,
        "auto": ctx.is_auto,
        "subject": parsed.subject,
        "text": parsed.text,
        "new_text": parsed.new_text,
        "channel": ctx.envelope.channel,
        "possible_duplicate": ctx.possible_duplicate,
        "defects": "\n".join(parsed.defects),
        "raw": b"" if raw_sha256 else ctx.raw,
        "raw_sha256": raw_sha256,
        "created_at": ctx.services.clock(),
    }
    message = new_row(Message, values)
    add_row(ctx.session, message, ctx.connection)
    if not parsed.attachments:
        return message
    for item in parsed.attachments:
        stored = item if isinstance(item, StoredAttachment) else StoredAttachment(item, data_dir)
        ctx.session.add(
            Attachment(
                message_pk=message.id,
                filename=item.filename,
                content_type=item.content_type,
                size=stored.size,
                sha256=stored.sha256,
                inline=item.inline,
                content_id=item.content_id,
            )
        )
    return message
