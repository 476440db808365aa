"""The notice to the sender of IMAP mail too large to take in (R-26): at most one a day each.

It goes through the durable outbox like other automatic mail (``enqueue_notice``: the bouncing,
per-recipient and hourly total caps apply) and repeats nothing of the mail, which was never read.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.outbound.context import helpdesk_info
from postdesk.daemon.outbound.outbox import enqueue_notice
from postdesk.daemon.services import Services
from postdesk.daemon.store.db import transaction
from postdesk.models.schema import OutboxItem

log = logging.getLogger("postdesk.imap")

CUSTOMER_TOO_LARGE = "customer/too_large"
KIND = "too_large"
ONE_PER = timedelta(days=1)


def notice_sender(
    services: Services, factory: sessionmaker[Session], sender: str, detail: dict[str, object]
) -> bool:
    """Queue the "too large" notice to ``sender`` unless one went to it within a day."""
    now = services.clock()
    with transaction(factory) as session:
        recent = session.scalar(
            select(OutboxItem.id)
            .where(
                OutboxItem.kind == KIND,
                OutboxItem.recipient == sender,
                OutboxItem.created_at >= now - ONE_PER,
            )
            .limit(1)
        )
        if recent is not None:
            log.info("too-large notice to %s not sent: one went out within a day", sender)
            return False
        context = {
            "helpdesk": helpdesk_info(services.settings),
            "size_mb": _megabytes(detail.get("size")),
            "limit_mb": _megabytes(detail.get("limit")),
        }
        item = enqueue_notice(
            session, services, kind=KIND, to=[sender], template=CUSTOMER_TOO_LARGE, context=context
        )
        return item is not None


def _megabytes(value: object) -> str:
    size = value if isinstance(value, int) else 0
    return f"{size / 1_000_000:.1f}"
