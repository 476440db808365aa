"""The weekly report as a task of ``postdesk serve``: look every few minutes whether last
week's report is due, and queue it once (see :mod:`postdesk.daemon.reports.mail`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.services import Services

log = logging.getLogger("postdesk.reports")

CHECK_SECONDS = 900.0


async def weekly_reports(
    services: Services,
    engine: Engine,
    factory: sessionmaker[Session],
    stop: asyncio.Event,
    every: float = CHECK_SECONDS,
) -> None:
    """Until ``stop``: queue last week's report when it is due; nothing when no list is set
    (then the report builder and numpy are never imported)."""
    if not services.settings.reports.weekly_to:
        return
    from postdesk.daemon.reports.mail import queue_weekly

    while not stop.is_set():
        try:
            await asyncio.to_thread(queue_weekly, services, engine, factory)
        except Exception as error:  # the database is away, or a template broke: try again later
            log.warning("weekly report not queued, will retry: %s", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
