"""Tables of the built-in CRM plugin (``postdesk.plugins.crm``): organizations.

Contacts live in ``models/schema.py`` (every requester becomes one); the CRM adds their
phone, tier and organization there and keeps the organizations here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from postdesk.models.schema import Base, utcnow


class Organization(Base):
    """A customer company; its contacts point to it, or it is found by their email domain."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(String(255), unique=True)  # name lower-cased, for merging
    domain: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
