"""What agents taught the classifier: one row per ``#spam``, ``#ham`` or ``#category``.

A label is about a ticket's first inbound message (the one the classifier judged); the
latest label of a kind for a message wins when the models are retrained.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from postdesk.models.schema import Base, utcnow


class ClassifyLabel(Base):
    """An agent's verdict on a message: kind "spam" (label spam|ham) or "category"."""

    __tablename__ = "classify_labels"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
