"""Where each IMAP mailbox was read up to, and which daemon may poll it: one ``imap_state`` row.

The lease is a conditional UPDATE: a daemon takes it when it is free, expired or already its
own, and must renew it before it runs out. Watermark writes carry the same condition, so a
daemon that lost its lease can never move the watermark under the new holder's feet. Times are
the daemons' own UTC clocks, so their clocks should agree to well within the lease.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.store.db import insert_ignore, transaction
from postdesk.models.schema import ImapState, utcnow


class LeaseLost(Exception):
    """Another daemon holds this mailbox's lease now: stop polling it."""


@dataclass(frozen=True)
class Watermark:
    """Every UID up to ``last_uid`` under ``uidvalidity`` is spooled or deliberately skipped."""

    uidvalidity: int
    last_uid: int


def owner_id() -> str:
    """A name for this daemon process that no other process shares: host:pid:random."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class MailboxState:
    """The ``imap_state`` row of one mailbox, as seen by one daemon (``owner``)."""

    def __init__(self, factory: sessionmaker[Session], mailbox: str, owner: str) -> None:
        self.factory = factory
        self.mailbox = mailbox
        self.owner = owner

    def acquire(self, seconds: float) -> bool:
        """Take or renew the lease for ``seconds``; False while another daemon holds it."""
        now = utcnow()
        with transaction(self.factory) as session:
            insert_ignore(
                session,
                ImapState.__table__,
                {"mailbox": self.mailbox, "uidvalidity": 0, "last_uid": 0, "updated_at": now},
                ["mailbox"],
            )
            free = or_(
                ImapState.lease_owner.is_(None),
                ImapState.lease_owner == self.owner,
                ImapState.lease_until < now,
            )
            taken = self._update(
                session, free, lease_owner=self.owner, lease_until=now + timedelta(seconds=seconds)
            )
        return taken

    def release(self) -> None:
        """Give the lease up at once, so another daemon can take over without waiting."""
        with transaction(self.factory) as session:
            self._update(
                session, ImapState.lease_owner == self.owner, lease_owner=None, lease_until=None
            )

    def load(self) -> Watermark:
        """The saved watermark (0, 0 for a mailbox never read)."""
        with self.factory() as session:
            row = session.execute(
                select(ImapState.uidvalidity, ImapState.last_uid).where(
                    ImapState.mailbox == self.mailbox
                )
            ).one_or_none()
        return Watermark(0, 0) if row is None else Watermark(int(row[0]), int(row[1]))

    def save(self, mark: Watermark) -> None:
        """Store the watermark; raises LeaseLost when this daemon no longer holds the lease."""
        with transaction(self.factory) as session:
            saved = self._update(
                session,
                ImapState.lease_owner == self.owner,
                uidvalidity=mark.uidvalidity,
                last_uid=mark.last_uid,
            )
        if not saved:
            raise LeaseLost(f"mailbox {self.mailbox}: lease lost, watermark not saved")

    def _update(self, session: Session, condition: Any, **values: Any) -> bool:
        statement = (
            update(ImapState)
            .where(ImapState.mailbox == self.mailbox, condition)
            .values(updated_at=utcnow(), **values)
            .execution_options(synchronize_session=False)
        )
        result = cast(CursorResult[Any], session.execute(statement))
        return result.rowcount == 1
