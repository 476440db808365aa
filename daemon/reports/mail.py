"""The weekly report mail: last week's report, HTML with a text alternative, via the outbox.

Sent at most once per week and helpdesk: the row ``reports.weekly:<monday>`` in the ``kv`` table
(its primary key) is written in the same transaction as the outbox row, so a second daemon or a
restart that tries again finds it, or fails on the key and writes nothing.
"""

from __future__ import annotations

import json
import logging
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, exc
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.outbound.compose import compose, envelope_address
from postdesk.daemon.outbound.context import helpdesk_info
from postdesk.daemon.reports.build import build_report, mailboxes
from postdesk.daemon.reports.business import policy_calendars
from postdesk.daemon.reports.html import html_context
from postdesk.daemon.reports.periods import Window, last_full_week
from postdesk.daemon.reports.text import render_text
from postdesk.daemon.services import Services
from postdesk.daemon.store.db import transaction
from postdesk.models.schema import KeyValue, OutboxItem

log = logging.getLogger("postdesk.reports")

TEMPLATE = "reports/weekly"
KIND = "weekly_report"


def sent_key(window: Window) -> str:
    """The unique key recording that the report of ``window`` was queued."""
    return f"reports.weekly:{window.first.isoformat()}"


def queue_weekly(services: Services, engine: Engine, factory: sessionmaker[Session]) -> bool:
    """Queue last week's report to ``reports.weekly_to`` unless it was queued before.

    Returns True when this call queued it.
    """
    settings = services.settings
    recipients = [envelope_address(a) for a in settings.reports.weekly_to]
    if not recipients:
        return False
    now = services.clock()
    window = last_full_week(now, ZoneInfo(settings.reports.timezone))
    key = sent_key(window)
    with factory() as session:
        if session.get(KeyValue, key) is not None:
            return False
    report = build_report(
        engine,
        window,
        f"{settings.helpdesk.name} weekly report",
        now,
        policy_calendars(settings),
        mailboxes(settings),
    )
    context = {
        **html_context(report),
        "text": render_text(report),
        "helpdesk": helpdesk_info(settings),
    }
    rendered = services.templates.render(TEMPLATE, context)
    message_id = services.tokens.mint(0)
    raw = compose(
        services,
        to=list(settings.reports.weekly_to),
        subject=rendered.subject,
        rendered=rendered,
        message_id=message_id,
        in_reply_to=None,
        references=[],
        auto=True,
    )
    try:
        with transaction(factory) as session:
            if session.get(KeyValue, key) is not None:
                return False
            session.add(KeyValue(key=key, value=message_id))
            session.add(
                OutboxItem(
                    ticket_id=None,
                    kind=KIND,
                    recipient=recipients[0],
                    recipients=json.dumps(recipients),
                    envelope_from=settings.helpdesk.address,
                    message_id=message_id,
                    auto=True,
                    raw=raw,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    except exc.IntegrityError:
        return False  # another daemon queued it first
    log.info(
        "%s weekly report %s to %s queued for %d recipient(s)",
        message_id,
        window.first,
        window.last,
        len(recipients),
    )
    return True
