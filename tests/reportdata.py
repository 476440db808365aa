"""A hand-computed report fixture: seven tickets around the end of summer time in Berlin.

Summer time ends on 2026-10-25 at 03:00 CEST (01:00Z): that local day lasts 25 hours. The
expected figures in tests/test_reports.py were worked out by hand from the rows below
(all times UTC; the comments give Berlin local time where it matters).
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, update

from postdesk.daemon.store.db import make_engine, upgrade_schema
from postdesk.models.schema import Event, Message, OutboxItem, QuarantineItem, Ticket
from postdesk.models.sla import TicketSla

HELPDESK = "support@example.com"
ALICE = "alice@example.com"
BOB = "bob@example.com"
AGENTS_TOML = f"""
[[agents]]
email = "{ALICE}"
name = "Alice"

[[agents]]
email = "{BOB}"
name = "Bob"

[reports]
timezone = "Europe/Berlin"
"""
# The fixture's SLA policies: "routine" counts office hours in Berlin, "urgent" every hour.
SLA_TOML = """
[[sla.calendars]]
name = "office"
timezone = "Europe/Berlin"
hours = "Mon-Fri 11:00-17:00"

[[sla.calendars]]
name = "always"
timezone = "Europe/Berlin"
hours = "24x7"

[[sla.policies]]
name = "urgent"
match = { category = "urgent-only" }
calendar = "always"
first_response = "2h"
resolution = "9h"

[[sla.policies]]
name = "routine"
calendar = "office"
first_response = "24h"
resolution = "45h"
"""


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of 2026 in UTC."""
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


class Builder:
    """Inserts rows with Core, counting ticket numbers and Message-IDs."""

    def __init__(self, engine: Engine) -> None:
        """Write into ``engine``'s database (schema already created)."""
        self.engine = engine
        self.numbers = itertools.count(1)
        self.ids = itertools.count(1)

    def ticket(self, created: datetime, channel: str, requester: str, **values: Any) -> int:
        """A ticket with its first inbound message and the acknowledgement; returns its id."""
        number = next(self.numbers)
        row = {
            "number": number,
            "subject": f"request {number}",
            "status": "open",
            "requester": requester,
            "created_at": created,
            "updated_at": created,
            **values,
        }
        with self.engine.begin() as conn:
            ticket_id = int(conn.execute(insert(Ticket).values(**row)).inserted_primary_key[0])
        self.message(ticket_id, "in", requester, created, channel=channel)
        self.message(ticket_id, "out", HELPDESK, created, auto=True, channel="outbox")
        return ticket_id

    def message(
        self, ticket_id: int, direction: str, author: str, moment: datetime, **values: Any
    ) -> None:
        """One stored message."""
        row = {
            "ticket_id": ticket_id,
            "message_id": f"<m{next(self.ids)}@example.org>",
            "direction": direction,
            "author": author,
            "raw": b"Subject: x\r\n\r\nbody\r\n",
            "created_at": moment,
            "channel": "smtp",
            **values,
        }
        with self.engine.begin() as conn:
            conn.execute(insert(Message).values(**row))

    def reply(self, ticket_id: int, agent: str, moment: datetime) -> None:
        """An agent's mail and the public reply relayed from it, in one moment."""
        self.message(ticket_id, "in", agent, moment)
        self.message(ticket_id, "out", HELPDESK, moment, channel="outbox")

    def event(self, ticket_id: int, kind: str, moment: datetime, detail: dict[str, Any]) -> None:
        """One event of the ticket's log."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(Event).values(
                    ticket_id=ticket_id, at=moment, actor="x", kind=kind, detail=json.dumps(detail)
                )
            )

    def status(self, ticket_id: int, moment: datetime, old: str, new: str) -> None:
        """A ``#status`` change."""
        self.event(ticket_id, "status", moment, {"from": old, "to": new})

    def sla(self, ticket_id: int, policy: str, **values: Any) -> None:
        """The ticket's ``ticket_sla`` row (due, warning and met times as the SLA clock sets them)."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(TicketSla).values(
                    ticket_id=ticket_id,
                    policy=policy,
                    timezone="Europe/Berlin",
                    **{"resolution_paused": "[]", "updated_at": at(11, 6, 0), **values},
                )
            )

    def csat_request(self, ticket_id: int, moment: datetime) -> None:
        """The CSAT request sent on solving."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(OutboxItem).values(
                    ticket_id=ticket_id,
                    kind="csat_request",
                    recipient="c@example.org",
                    recipients='["c@example.org"]',
                    envelope_from=HELPDESK,
                    message_id=f"<o{next(self.ids)}@example.com>",
                    raw=b"x",
                    status="sent",
                    created_at=moment,
                )
            )

    def quarantine(self, moment: datetime, status: str) -> None:
        """One quarantined message."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(QuarantineItem).values(
                    spool_id=f"q{next(self.ids)}",
                    reason="test",
                    channel="smtp",
                    raw=b"x",
                    status=status,
                    created_at=moment,
                )
            )


def build_fixture(database_url: str) -> None:
    """Create the schema and the fixture's rows."""
    engine = make_engine(database_url)
    upgrade_schema(engine)
    b = Builder(engine)
    # T1: created 2026-10-25 00:30 CEST (local day Oct 25, UTC day Oct 24); Alice answers at
    # 03:30 CET, 4 hours later though the local clock moved 3; solved 13.5 h after creation,
    # then closed (solved -> closed is not a second solve); rated 5.
    t1 = b.ticket(at(10, 24, 22, 30), "smtp", "c1@example.org", category="billing", assignee=ALICE)
    b.reply(t1, ALICE, at(10, 25, 2, 30))
    b.status(t1, at(10, 25, 12), "open", "solved")
    b.csat_request(t1, at(10, 25, 12))
    b.status(t1, at(10, 26, 7), "solved", "closed")
    b.event(t1, "rated", at(10, 26, 8), {"rating": 5})
    _set(engine, t1, status="closed", solved_at=at(10, 25, 12), rating=5)
    # T2: by IMAP; an internal copy at 08:30 is no reply; Bob answers after 1 h; solved, then
    # reopened by the customer on Oct 27: open at the end, no resolution.
    t2 = b.ticket(at(10, 20, 8), "imap:main", "c2@example.org", category="billing", assignee=BOB)
    b.message(t2, "out", HELPDESK, at(10, 20, 8, 30), internal=True, channel="outbox")
    b.reply(t2, BOB, at(10, 20, 9))
    b.status(t2, at(10, 21, 8), "open", "solved")
    b.csat_request(t2, at(10, 21, 8))
    b.event(t2, "reopened", at(10, 27, 10), {"by": "c2@example.org"})
    # T3: ingested, never answered, unassigned.
    t3 = b.ticket(at(10, 27, 10), "ingest", "c3@example.org", category="shipping", status="new")
    # T4: Alice answers after 24 h, solved 48 h after creation, rated 2.
    t4 = b.ticket(at(10, 28, 12), "smtp", "c4@example.org", category="shipping", assignee=ALICE)
    b.reply(t4, ALICE, at(10, 29, 12))
    b.status(t4, at(10, 30, 12), "open", "solved")
    b.csat_request(t4, at(10, 30, 12))
    b.event(t4, "rated", at(10, 31, 9), {"rating": 2})
    _set(engine, t4, status="solved", solved_at=at(10, 30, 12), rating=2)
    # T5: spam.
    t5 = b.ticket(at(10, 22, 10), "smtp", "spammer@example.net", spam=True, status="closed")
    b.event(t5, "spam", at(10, 22, 10, 5), {})
    # T6: older than the range, still open with Bob.
    t6 = b.ticket(at(10, 1, 10), "smtp", "c6@example.org", assignee=BOB)
    # T7: Bob answers after 2 h; solved only after the range ends (Nov 5).
    t7 = b.ticket(at(10, 23, 10), "smtp", "c7@example.org", category="billing", assignee=BOB)
    b.reply(t7, BOB, at(10, 23, 12))
    b.status(t7, at(11, 5, 10), "open", "solved")
    _set(engine, t7, status="solved", solved_at=at(11, 5, 10))
    # SLA rows, judged as of the end of the range (2026-11-01 23:00Z):
    # T1 urgent: first reply an hour late (breached); solved 8 h early (met).
    b.sla(
        t1,
        "urgent",
        first_response_due=at(10, 25, 1, 30),
        first_response_warn_at=at(10, 25, 1),
        first_response_met_at=at(10, 25, 2, 30),
        resolution_due=at(10, 25, 20),
        resolution_warn_at=at(10, 25, 18),
        resolved_at=at(10, 25, 12),
    )
    # T2 routine: answered in time (met); reopened, due after the end, warning passed (at risk).
    b.sla(
        t2,
        "routine",
        first_response_due=at(10, 20, 12),
        first_response_warn_at=at(10, 20, 11),
        first_response_met_at=at(10, 20, 9),
        resolution_due=at(11, 3, 8),
        resolution_warn_at=at(10, 31, 8),
    )
    # T3 routine: never answered, due Oct 28 (breached; at risk on Oct 27 after 20:00Z); resolution
    # clock paused: no due time (open).
    b.sla(t3, "routine", first_response_due=at(10, 28, 10), first_response_warn_at=at(10, 27, 20))
    # T4 urgent: answered in time (met); solved two hours late (breached); pending for 12 h
    # (Oct 29 12:00Z to Oct 30 00:00Z), so 36 of its 48 hours count (around the clock).
    b.sla(
        t4,
        "urgent",
        first_response_due=at(10, 29, 14),
        first_response_warn_at=at(10, 29, 13),
        first_response_met_at=at(10, 29, 12),
        resolution_due=at(10, 30, 10),
        resolution_warn_at=at(10, 30, 8),
        resolved_at=at(10, 30, 12),
        resolution_paused=json.dumps([[at(10, 29, 12).isoformat(), at(10, 30, 0).isoformat()]]),
    )
    # T5 (spam) and T6 (created before the range) are left out whatever their SLA says.
    b.sla(t5, "urgent", first_response_due=at(10, 22, 12))
    b.sla(t6, "routine", first_response_due=at(10, 2, 10))
    # T7 routine: answered in time (met); solved Nov 5, after the end: still open then, its
    # warning (Nov 8) not yet passed.
    b.sla(
        t7,
        "routine",
        first_response_due=at(10, 23, 14),
        first_response_warn_at=at(10, 23, 13),
        first_response_met_at=at(10, 23, 12),
        resolution_due=at(11, 10, 10),
        resolution_warn_at=at(11, 8, 10),
        resolved_at=at(11, 5, 10),
    )
    b.quarantine(at(10, 22, 3), "held")
    b.quarantine(at(10, 30, 3), "replayed")
    b.quarantine(at(9, 1, 3), "held")
    engine.dispose()


def _set(engine: Engine, ticket_id: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(Ticket).where(Ticket.id == ticket_id).values(**values))
