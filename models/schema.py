"""The database tables, as SQLAlchemy 2 declarative models.

Changes to this file go with an Alembic migration in ``models/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    case,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column, relationship
from sqlalchemy.orm.attributes import set_committed_value

STATUSES = ("new", "open", "pending", "solved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Base class of every table."""


class Ticket(Base):
    """A customer's request, with the conversation about it."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    status_label: Mapped[str | None] = mapped_column(String(64))  # the team's word for status
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    category: Mapped[str | None] = mapped_column(String(64))
    group_name: Mapped[str | None] = mapped_column(String(64))
    requester: Mapped[str] = mapped_column(String(320), index=True)
    assignee: Mapped[str | None] = mapped_column(String(320))
    spam: Mapped[bool | None] = mapped_column(Boolean)
    spam_score: Mapped[float | None] = mapped_column(Float)  # the classifier's probability
    category_score: Mapped[float | None] = mapped_column(Float)  # None: set by hand or unknown
    rating: Mapped[int | None] = mapped_column(Integer)
    merged_into: Mapped[int | None] = mapped_column(Integer)
    follows: Mapped[int | None] = mapped_column(
        Integer
    )  # number of the closed ticket this continues
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    solved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    messages: Mapped[list[Message]] = relationship(back_populates="ticket", order_by="Message.id")
    participants: Mapped[list[Participant]] = relationship(
        back_populates="ticket", order_by="Participant.id"
    )


class Contact(Base):
    """Someone who has written to the helpdesk."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(Text, default="")
    bouncing: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    phone: Mapped[str | None] = mapped_column(String(32))  # E.164 (the CRM plugin)
    tier: Mapped[str | None] = mapped_column(String(32))  # e.g. gold; feeds priority and SLA
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))


class Participant(Base):
    """An address that may take part in a ticket: requester, Cc collaborator or agent."""

    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("ticket_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))  # requester | cc | agent

    ticket: Mapped[Ticket] = relationship(back_populates="participants")


class Message(Base):
    """One mail received into, or sent from, a ticket; the raw bytes are kept: in ``raw``, or
    for a large message in the blob store, named by ``raw_sha256`` (``raw`` then empty)."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    dedupe_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    author: Mapped[str] = mapped_column(String(320))
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    auto: Mapped[bool] = mapped_column(Boolean, default=False)
    subject: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    new_text: Mapped[str] = mapped_column(Text, default="")
    channel: Mapped[str] = mapped_column(String(64), default="smtp")
    possible_duplicate: Mapped[bool] = mapped_column(Boolean, default=False)
    defects: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    raw_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # sent mail: 1st MDN

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", order_by="Attachment.id"
    )


class Attachment(Base):
    """A file carried by a message, stored under the data dir by its content hash."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    content_id: Mapped[str | None] = mapped_column(String(998))

    message: Mapped[Message] = relationship(back_populates="attachments")


class Event(Base):
    """One entry of a ticket's history: who did what, when."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")


class OutboxItem(Base):
    """A mail to send, written in the same transaction as the change that caused it.

    The mail's bytes are kept once: a ticket's mail in its outgoing ``Message`` row, named by
    ``message_pk`` (``stored_raw`` then empty), other mail (notices, reports) and rows queued
    before migration 0014 in ``stored_raw``. ``raw`` reads them wherever they are; passing
    ``raw=`` to the constructor sets ``stored_raw``. The row itself stays small, so the
    sender's claim and outcome UPDATEs rewrite a few hundred bytes, not the mail.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_recipient_auto", "recipient", "auto", "created_at"),
        Index("ix_outbox_auto_created", "auto", "created_at"),  # the hourly total cap
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    kind: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(320))  # first recipient, for rate limits
    recipients: Mapped[str] = mapped_column(Text)  # JSON list of envelope recipients
    envelope_from: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    auto: Mapped[bool] = mapped_column(Boolean, default=True)
    stored_raw: Mapped[bytes] = mapped_column("raw", LargeBinary)  # empty when message_pk is set
    message_pk: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))  # holds the bytes
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[str | None] = mapped_column(String(255))  # daemon_id of the claimer
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    raw: Mapped[bytes] = column_property(  # read-only: the mail's bytes, wherever they are kept
        case(
            (message_pk.is_(None), stored_raw),
            else_=select(Message.raw)
            .where(Message.id == message_pk)
            .correlate_except(Message)
            .scalar_subquery(),
        )
    )

    def __init__(self, **values: object) -> None:
        """A new row; ``raw=`` is what ``raw`` reads and, unless ``stored_raw=`` is given too,
        the bytes kept in the row itself."""
        raw = values.pop("raw", None)
        if raw is not None:
            values.setdefault("stored_raw", raw)
        super().__init__(**values)
        if raw is not None:
            set_committed_value(self, "raw", raw)  # read, never written: not a column


class QuarantineItem(Base):
    """A message that could not be processed, with the reason and its raw bytes."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    spool_id: Mapped[str] = mapped_column(String(128), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(64))
    envelope: Mapped[str] = mapped_column(Text, default="{}")  # JSON: mail_from, rcpt_tos
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="held")  # held | replayed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Counter(Base):
    """Named counters: ``ticket_number`` (ticket numbers on SQLite; PostgreSQL uses the
    ``ticket_numbers`` sequence) and ``rr:<group>`` (round-robin turns)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class KeyValue(Base):
    """Small pieces of shared state, such as the HMAC secret all daemons must agree on."""

    __tablename__ = "kv"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ImapState(Base):
    """Per ``[[imap]]`` mailbox: how far it was read, and which daemon may poll it now.

    ``last_uid`` is valid only for ``uidvalidity``; it moves only after the messages up to it
    are durably in the spool. ``lease_owner`` polls the mailbox until ``lease_until``.
    """

    __tablename__ = "imap_state"

    mailbox: Mapped[str] = mapped_column(String(64), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger, default=0)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# Indexes that let the reports (daemon/reports/) aggregate by time without reading message bodies
# (migration 0008): tickets by creation and solve time, events by kind and time, and a covering
# index for a ticket's first reply, replying agent and channel.
Index("ix_tickets_created_at", Ticket.created_at)
Index("ix_tickets_solved_at", Ticket.solved_at)
Index("ix_events_kind_at", Event.kind, Event.at)
Index(
    "ix_messages_report",
    Message.ticket_id,
    Message.direction,
    Message.created_at,
    Message.auto,
    Message.internal,
    Message.author,
    Message.channel,
)

# Tables kept in their own modules, registered on Base here so that metadata sees them all.
from postdesk.models import classify as _classify_tables  # noqa: E402, F401
from postdesk.models import crm, plugin_events, webhooks  # noqa: E402, F401
from postdesk.models import sla as _sla_tables  # noqa: E402, F401
