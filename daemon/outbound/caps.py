"""The caps on automatic mail (R-43): per recipient, bouncing addresses, and the hourly total.

Forged senders must not turn the helpdesk into a mail cannon: :func:`refusal` says why an
automatic mail to an outside address must not be sent now; agents are exempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Integer, bindparam, func, select, type_coerce
from sqlalchemy.orm import Session

from postdesk.daemon.config import Settings
from postdesk.daemon.store.bounces import changes_seen, note_change
from postdesk.daemon.store.direct import Direct
from postdesk.models.schema import Contact, OutboxItem

TOTAL_CAP = "the hourly cap on automatic mail to outside addresses is reached"
RECOUNT = timedelta(seconds=1)  # the hourly total is counted again at least this often
# connection.info key: (when counted, count) of automatic mail to outside addresses in the hour
_TOTAL_KEPT = "postdesk.outbox.auto_total"


class Counted(NamedTuple):
    """What :func:`refusal` reads of ``recipient``, read earlier in another statement (the
    dedupe step's, :data:`RECIPIENT_COUNTS`): its bounce flag and automatic mails in the last
    10 minutes and day, with the connection's count of outbox and bounce writes then
    (:func:`postdesk.daemon.store.bounces.changes_seen`)."""

    recipient: str
    bouncing: Any
    in_10min: int
    in_day: int
    changes: int


def refusal(
    session: Session,
    settings: Settings,
    recipient: str,
    now: datetime,
    counted: Counted | None = None,
) -> str | None:
    """Why automatic mail to ``recipient`` must not be sent now, or None when it may.

    Agents are exempt: the caps protect outside addresses from loops and floods, and an agent
    must never silently stop hearing about tickets on a busy day. ``counted``: the recipient's
    figures read earlier in this transaction; used instead of reading them again when they
    are about ``recipient`` and no outbox row or bounce flag was written since (the windows
    only move on: the earlier counts are at least the current ones).
    """
    if settings.agent(recipient) is not None:
        return None
    if any(isinstance(row, (OutboxItem, Contact)) for row in [*session.new, *session.dirty]):
        session.flush()  # queued mail and contacts count; nothing else pending changes these
        counted = None
    # run on the DBAPI cursor (no ORM layer, no autoflush): pending rows were flushed just above
    connection = session.connection()
    if (
        counted is not None
        and counted.recipient == recipient
        and counted.changes == changes_seen(connection)
    ):
        is_bouncing, in_10min, in_day = counted.bouncing, counted.in_10min, counted.in_day
    else:
        is_bouncing, in_10min, in_day = _CAPS.one(connection, count_values(recipient, now))
    if is_bouncing:
        return "the address is bouncing"
    outbound = settings.outbound
    windows = (
        (in_10min, outbound.auto_per_recipient_10min, "10 minutes"),
        (in_day, outbound.auto_per_recipient_day, "day"),
    )
    for count, limit, label in windows:
        if (count or 0) >= limit:
            return f"rate limit of {limit} automatic mails per {label} reached"
    if _auto_total_reached(connection, settings, now):
        return TOTAL_CAP
    return None


def _auto_total_reached(connection: Connection, settings: Settings, now: datetime) -> bool:
    """Whether outside addresses (not agents) had ``outbound.auto_total_per_hour`` automatic
    mails queued within the last hour.

    Counting reads an index entry per mail of the hour, so the count is kept on the database
    connection, with the mails queued through it added (:func:`count_queued`), and counted again
    after ``RECOUNT`` or once it reaches the cap. Kept, it is an upper bound of what this
    connection's process has queued: the hour only moves on, and mails of a transaction that
    rolled back stay counted until the next count. Mail queued by another process at the same
    moment is seen at the next count (as two transactions counting at once never saw each other).
    """
    cap = settings.outbound.auto_total_per_hour
    info = connection.info
    kept = info.get(_TOTAL_KEPT)
    if kept is not None and kept[0] <= now < kept[0] + RECOUNT and kept[1] < cap:
        return False
    counted = _count_total(connection, settings, now, cap)
    info[_TOTAL_KEPT] = (now, counted)
    return counted >= cap


def count_queued(
    connection: Connection, settings: Settings, mails: Iterable[tuple[bool, str]]
) -> None:
    """Add the mails just queued through ``connection``, ``(auto, recipient)`` each, to its kept
    count: those that are automatic mails to an outside address."""
    note_change(connection)  # figures read before (Counted) are no longer current
    kept = connection.info.get(_TOTAL_KEPT)
    if kept is None:
        return
    added = sum(1 for auto, to in mails if auto and settings.agent(to) is None)
    if added:
        connection.info[_TOTAL_KEPT] = (kept[0], kept[1] + added)


def _count_total(connection: Connection, settings: Settings, now: datetime, cap: int) -> int:
    """Automatic mails to outside addresses within the hour before ``now``, at most ``cap``.

    Counted as every automatic mail of the hour less those to agents: both counts are answered
    by an index alone (``ix_outbox_auto_created``, ``ix_outbox_recipient_auto``), where
    testing each row's recipient would read the rows themselves.
    """
    agents = [agent.email.lower() for agent in settings.agents]
    recent = (OutboxItem.auto.is_(True), OutboxItem.created_at > now - timedelta(hours=1))
    counted = select(func.count()).select_from(OutboxItem).where(*recent)
    if agents:
        to_agents = (
            select(func.count())
            .select_from(OutboxItem)
            .where(*recent, OutboxItem.recipient.in_(agents))
        )
        counted = select(counted.scalar_subquery() - to_agents.scalar_subquery())
    # a Core statement (no ORM layer, no autoflush): refusal() flushed any pending outbox row
    return min(int(connection.execute(counted).scalar() or 0), cap)


def count_values(recipient: str, now: datetime) -> dict[str, Any]:
    """The parameters of :data:`RECIPIENT_COUNTS` (and of the caps' own statement) for
    automatic mail to ``recipient`` at ``now``."""
    return {
        "email": recipient.lower(),
        "recipient": recipient,
        "recent": now - timedelta(minutes=10),
        "day": now - timedelta(days=1),
    }


# The bounce flag and both rate windows of a recipient in one statement, built once and run on
# the DBAPI cursor (store.direct): this runs for every automatic mail to an outside address
# whose figures were not read before (``Counted``). The flag is read as the driver returns it
# (SQLite: 0/1, PostgreSQL: a bool; None: no contact). Its parameters: ``count_values``.
_COUNTS = select(
    type_coerce(
        select(Contact.bouncing).where(Contact.email == bindparam("email")).scalar_subquery(),
        Integer,
    ),
    func.count().filter(OutboxItem.created_at > bindparam("recent")),
    func.count(),
).where(
    OutboxItem.recipient == bindparam("recipient"),
    OutboxItem.auto.is_(True),
    OutboxItem.created_at > bindparam("day"),
)
_CAPS = Direct(_COUNTS)
RECIPIENT_COUNTS = _COUNTS.subquery()  # the same one row, for another statement to join
