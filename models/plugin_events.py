"""Plugin events owed to the plugins: the journal that lets a killed hook call run again (R-17).

A row is written in the transaction of the message that caused the event, so it exists exactly
when the change does; it is deleted once every implementation of the hook has answered, failed
or timed out. A row whose process died before that is fired again, with the same key.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from postdesk.models.schema import Base, utcnow


class PluginEvent(Base):
    """One event hook call not yet answered by every plugin."""

    __tablename__ = "plugin_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)  # the hooks' ``event_id``
    hook: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[str] = mapped_column(Text)  # the hook's arguments as JSON
    owner: Mapped[str] = mapped_column(String(255), index=True)  # "host:pid" firing it
    lease_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
