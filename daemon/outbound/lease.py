"""Outbox leases (issue 13): short, renewed while a mail is being sent, owned by one daemon.

A row is claimed for ``LEASE_SECONDS`` and renewed every third of that while delivery goes on,
so a crashed daemon's rows are free again within a minute; at start-up a daemon releases the
rows its previous run left claimed (same ``daemon_id``) at once. The one window left for a
duplicate is a crash between the relay's 250 and the row's update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.store.db import in_list, transaction
from postdesk.models.schema import OutboxItem, utcnow

log = logging.getLogger("postdesk.outbox")

LEASE_SECONDS = 60.0


def release_own_claims(factory: sessionmaker[Session], owner: str) -> int:
    """Free the pending rows this daemon's previous run claimed; returns how many."""
    with transaction(factory) as session:
        result = session.execute(
            update(OutboxItem)
            .where(OutboxItem.claimed_by == owner, OutboxItem.status == "pending")
            .values(claimed_until=None, claimed_by=None)
            .execution_options(synchronize_session=False)
        )
        count = int(cast(CursorResult[Any], result).rowcount or 0)
    if count:
        log.warning("released %d outbox row(s) claimed before the last restart", count)
    return count


def renew(
    factory: sessionmaker[Session], item_ids: list[int], owner: str, lease: timedelta
) -> None:
    """Extend this daemon's lease on its pending rows among ``item_ids``."""
    with transaction(factory) as session:
        session.execute(
            update(OutboxItem)
            .where(
                OutboxItem.id.in_(in_list(item_ids)),
                OutboxItem.claimed_by == owner,
                OutboxItem.status == "pending",
            )
            .values(claimed_until=utcnow() + lease)
            .execution_options(synchronize_session=False)
        )


@contextlib.asynccontextmanager
async def kept(
    factory: sessionmaker[Session], item_ids: list[int], owner: str, lease: timedelta
) -> AsyncIterator[None]:
    """Renew the lease on ``item_ids`` (a claimed group) every third of ``lease`` until the
    block ends."""

    async def renewing() -> None:
        while True:
            await asyncio.sleep(lease.total_seconds() / 3)
            try:
                await asyncio.to_thread(renew, factory, item_ids, owner, lease)
            except Exception as exc:  # the next renewal tries again; the send goes on
                log.warning("%d outbox row(s): lease not renewed: %s", len(item_ids), exc)

    task = asyncio.create_task(renewing())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
