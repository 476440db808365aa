"""What pipeline steps share: the per-message context and the outcomes a step may raise.

One message is processed in one database transaction. Each step is a function
``step(ctx) -> None``; their order is ``postdesk.daemon.steps.PIPELINE``; a step ends processing early by raising a
``Disposition``. The worker (``postdesk.daemon.worker``) is the single place that catches them.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import cast

from sqlalchemy import Connection, Table
from sqlalchemy.orm import Session

from postdesk.daemon.config import Agent
from postdesk.daemon.intake.spool import Envelope, SpoolEntry
from postdesk.daemon.mail.parse import ParsedMessage
from postdesk.daemon.outbound.caps import Counted
from postdesk.daemon.outbound.held import HeldMail
from postdesk.daemon.outbound.outbox import Mail
from postdesk.daemon.services import Services
from postdesk.daemon.store.db import insert_ignore, insert_rows
from postdesk.models.schema import Event, Message, Participant, Ticket
from postdesk.models.sla import TicketSla


class Disposition(Exception):
    """A step decided this message's fate; ``reason`` is logged and, if held, shown to operators."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Duplicate(Disposition):
    """The message is already stored: nothing more to do."""


class Discard(Disposition):
    """The message is deliberately dropped (our own mail coming back); logged, not stored."""


class Hold(Disposition):
    """The message can never be processed as it is: quarantine it at once with the reason."""


@dataclass
class MessageContext:
    """Everything one message's steps know and decide, from raw bytes to stored ticket."""

    services: Services
    session: Session
    spool_id: str
    envelope: Envelope
    spooled: SpoolEntry  # the claimed file: its raw bytes are read in pieces where they can be
    parsed: ParsedMessage = field(init=False)
    dedupe_key: str = ""
    sender: str = ""
    auto_reason: str | None = None  # why this mail is automatic (RFC 3834), if it is
    ticket: Ticket | None = None
    created: bool = False
    reopened: bool = False
    follows: int | None = None  # number of the closed ticket a new ticket continues
    possible_duplicate: bool = False
    message: Message | None = None
    notes: list[str] = field(default_factory=list)
    agent: Agent | None = None  # From is an agent AND the mail is authenticated
    unverified_agent: bool = False  # From is an agent but the mail is not authenticated
    auth_detail: str = ""  # how the agent was authenticated, or why not
    token_ticket: int | None = None  # the agent was believed on a token for this ticket only
    recent_new_tickets: int | None = None  # the sender's within the flood window (steps.dedupe)
    counted: Counted | None = None  # the caps' figures of the sender (steps.dedupe)
    flooded: bool = False  # the sender is over the new-ticket cap (steps.flood)
    rating: int | None = None  # CSAT rating this reply records (the ticket stays solved)
    reply_text: str = ""  # what an agent's reply says to the customer (no commands, no quote)
    solved: bool = False  # this message made the ticket solved (a CSAT request follows)
    agent_errors: list[str] = field(default_factory=list)  # told back to the agent
    spam: bool = False  # the classifier judged this message spam (steps.classify)
    spam_score: float | None = None  # its spam probability; None without a spam model
    category: str | None = None  # its category; None below the floor or without a model
    category_score: float | None = None
    facts_pending: concurrent.futures.Future[dict[str, object]] | None = None  # plugin lookups
    facts: dict[str, object] = field(default_factory=dict)  # their answers: contact, orders
    held: list[HeldMail] | None = None  # notifications held until the lookups end (steps.facts)
    ticket_before: dict[str, object] | None = None  # watched ticket fields before this message
    sla: TicketSla | None = None  # the ticket's SLA row as the sla step left it
    after_commit: list[Callable[[], None]] = field(default_factory=list)  # plugin events
    mails: list[Mail] = field(default_factory=list)  # to queue together (steps.enqueue)

    @cached_property
    def raw(self) -> bytes:
        """The raw message, read when a step first needs it whole (a large one after parsing,
        which reads its file in pieces, so its bytes and parse tree are never in memory
        together; the parse step reads a small one first, once)."""
        return self.spooled.raw

    @cached_property
    def connection(self) -> Connection:
        """The session's connection, asked for once: the same throughout the message's
        transaction (the steps run several statements on it)."""
        return self.session.connection()

    def run_after_commit(self) -> None:
        """Hand over what must happen once this message's transaction has committed."""
        for callback in self.after_commit:
            callback()

    @property
    def is_auto(self) -> bool:
        """True for mail a machine sent (auto-replies, bounces, lists): it gets no auto-reply."""
        return self.auto_reason is not None

    @property
    def keeps_status(self) -> bool:
        """True when storing this message must not reopen the ticket: a rating, or an agent."""
        return self.rating is not None or self.agent is not None


Step = Callable[[MessageContext], None]
_EVENTS = cast(Table, Event.__table__)


def add_participant(ctx: MessageContext, ticket: Ticket, email: str, role: str) -> None:
    """Make ``email`` a participant of ``ticket`` unless it is one already."""
    insert_ignore(
        ctx.connection,
        Participant.__table__,
        {"ticket_id": ticket.id, "email": email.lower(), "role": role},
        ["ticket_id", "email"],
    )


def log_event(
    ctx: MessageContext, kind: str, detail: Mapping[str, object], actor: str = ""
) -> None:
    """Append an entry to the ticket's event log (a Core insert, written at once)."""
    log_events(ctx, [(kind, detail, actor)])


EventEntry = tuple[str, Mapping[str, object], str]  # kind, detail, actor ("": the sender)


def log_events(ctx: MessageContext, entries: Sequence[EventEntry]) -> None:
    """Append ``(kind, detail, actor)`` entries to the ticket's event log, in order, in one
    statement; an empty actor is the message's sender."""
    assert ctx.ticket is not None
    if ctx.ticket.id is None:
        ctx.session.flush()
    at = ctx.services.clock()
    rows = [
        {
            "ticket_id": ctx.ticket.id,
            "at": at,
            "actor": actor or ctx.sender,
            "kind": kind,
            "detail": json.dumps(detail, default=str),
        }
        for kind, detail, actor in entries
    ]
    insert_rows(ctx.connection, _EVENTS, rows)
