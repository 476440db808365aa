"""IMAP mail is done on the server only once it is settled in the database (RELIABILITY rule 5).

After spooling a batch the poller waits until the worker has settled every message (stored,
dropped as a duplicate, or quarantined: its spool file is gone) before it flags or moves them
and advances the watermark. A daemon killed before that leaves the server untouched, so the
next lease holder fetches the messages again (the dedupe key stores them once).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.intake.spool import Spool
from postdesk.models.schema import QuarantineItem

POLL_SECONDS = 0.2


async def wait_settled(
    spool: Spool, factory: sessionmaker[Session], spool_ids: set[str]
) -> set[str]:
    """Wait until none of ``spool_ids`` is left in the spool; return those quarantined."""
    if not spool_ids:
        return set()
    while await asyncio.to_thread(spool.present, spool_ids):
        await asyncio.sleep(POLL_SECONDS)
    return await asyncio.to_thread(_quarantined, factory, spool_ids)


def _quarantined(factory: sessionmaker[Session], spool_ids: set[str]) -> set[str]:
    with factory() as session:
        query = select(QuarantineItem.spool_id).where(QuarantineItem.spool_id.in_(spool_ids))
        return set(session.scalars(query))
