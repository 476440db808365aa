"""Statements run on the DBAPI cursor (``store.direct``) store exactly what SQLAlchemy stores,
read back the same, and keep SQLAlchemy's errors, events and savepoints."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Table, bindparam, event, exc, insert, select
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.steps.dedupe import _STORED
from postdesk.daemon.store.db import (
    ROWS_PER_INSERT,
    add_row,
    add_ticket_row,
    insert_ignore,
    insert_rows,
    leave_savepoints_open,
    new_row,
    next_ticket_number,
)
from postdesk.daemon.store.direct import Direct
from postdesk.models.schema import Contact, Event, Message, Participant, Ticket
from postdesk.models.sla import TicketSla

AT = datetime(2026, 11, 30, 21, 5, 7, 123456, tzinfo=UTC)
LATER = datetime(2026, 12, 1, 8, 0, 0, 5, tzinfo=UTC)


def stored(session: Session, table: str, skip: tuple[str, ...] = ("id",)) -> list[dict[str, Any]]:
    """The rows of ``table`` as the driver hands them back (no SQLAlchemy type processing)."""
    rows = session.connection().exec_driver_sql(f"SELECT * FROM {table} ORDER BY 1").mappings()
    return [{k: v for k, v in row.items() if k not in skip} for row in rows]


def ticket_values(number: int) -> dict[str, Any]:
    return {
        "number": number,
        "subject": "Printer on fire — ünïcode",
        "status": "new",
        "status_label": "new",
        "priority": "normal",
        "requester": "carol@example.org",
        "spam": False,
        "spam_score": 0.125,
        "created_at": AT,
        "updated_at": LATER,
    }


def test_a_ticket_written_directly_is_stored_as_sqlalchemy_stores_it(
    factory: sessionmaker[Session],
) -> None:
    with factory() as session, session.begin():
        add_row(session, Ticket(**ticket_values(1)))
        built = new_row(Ticket, ticket_values(2))
        add_row(session, built)
        session.connection().execute(insert(Ticket.__table__), ticket_values(3))
        direct, built_row, core = stored(session, "tickets", ("id", "number"))
        session.expire_all()  # the object reads back what was written
        assert session.get(Ticket, built.id).spam_score == 0.125  # type: ignore[union-attr]
    assert direct == built_row == core
    assert direct["created_at"] in ("2026-11-30 21:05:07.123456", AT)  # SQLite's text, or PG's


def test_a_message_and_its_ticket_sla_are_stored_as_sqlalchemy_stores_them(
    factory: sessionmaker[Session],
) -> None:
    with factory() as session, session.begin():
        ticket = Ticket(**ticket_values(1))
        add_row(session, ticket)
        message = {
            "ticket_id": ticket.id,
            "message_id": "<a@example.org>",
            "dedupe_key": "ab" * 32,
            "direction": "in",
            "author": "carol@example.org",
            "internal": False,
            "auto": True,
            "subject": "Printer",
            "text": "It burns.\r\n",
            "new_text": "It burns.",
            "channel": "smtp",
            "possible_duplicate": True,
            "defects": "",
            "raw": b"\x00\xffraw bytes\r\n",
            "raw_sha256": None,
            "created_at": AT,
        }
        add_row(session, Message(**message))
        core = {**message, "dedupe_key": "cd" * 32}  # unique
        session.connection().execute(insert(Message.__table__), core)
        sla = {
            "ticket_id": ticket.id,
            "policy": "gold",
            "timezone": "Europe/Berlin",
            "first_response_due": LATER,
            "resolution_paused": '[["2026-11-30T21:05:07+00:00", "2026-12-01T08:00:00+00:00"]]',
            "resolved_at": None,
            "updated_at": AT,
        }
        add_row(session, TicketSla(**sla))
        [direct_sla] = stored(session, "ticket_sla")
        session.connection().exec_driver_sql("DELETE FROM ticket_sla")
        session.connection().execute(insert(TicketSla.__table__), sla)
        [core_sla] = stored(session, "ticket_sla")
        direct_message, core_message = stored(session, "messages", ("id", "dedupe_key"))
    assert direct_message == core_message and bytes(direct_message["raw"]) == message["raw"]
    assert direct_sla == core_sla


def test_inserts_that_ignore_conflicts_store_defaults_as_sqlalchemy_does(
    factory: sessionmaker[Session],
) -> None:
    with factory() as session, session.begin():
        values = {"email": "carol@example.org", "name": "Carol", "created_at": AT}
        insert_ignore(session, Contact.__table__, values, ["email"])
        insert_ignore(session, Contact.__table__, {**values, "name": "Again"}, ["email"])
        core = {**values, "email": "dave@example.org"}
        session.connection().execute(insert(Contact.__table__), core)
        direct_row, core_row = stored(session, "contacts", ("id", "email"))
        ticket = Ticket(**ticket_values(1))
        add_row(session, ticket)
        for _ in range(2):
            insert_ignore(
                session,
                Participant.__table__,
                {"ticket_id": ticket.id, "email": "carol@example.org", "role": "requester"},
                ["ticket_id", "email"],
            )
        participants = stored(session, "participants")
    assert direct_row == core_row and direct_row["name"] == "Carol"
    assert participants == [
        {"ticket_id": ticket.id, "email": "carol@example.org", "role": "requester"}
    ]


def test_events_written_together_are_stored_as_sqlalchemy_stores_them(
    factory: sessionmaker[Session],
) -> None:
    with factory() as session, session.begin():
        ticket = Ticket(**ticket_values(1))
        add_row(session, ticket)
        rows = [
            {"ticket_id": ticket.id, "at": AT, "actor": "a", "kind": kind, "detail": '{"x": 1}'}
            for kind in ("created", "received")
        ]
        insert_rows(session.connection(), Event.__table__, rows)
        insert_rows(session.connection(), Event.__table__, rows[:1])
        session.connection().execute(insert(Event.__table__), rows)
        session.connection().execute(insert(Event.__table__), rows[:1])
        written = stored(session, "events")
    assert written[:3] == written[3:]
    assert [row["kind"] for row in written] == ["created", "received", "created"] * 2


def test_rows_beyond_one_statement_are_inserted_in_order(
    factory: sessionmaker[Session],
) -> None:
    with factory() as session, session.begin():
        ticket = Ticket(**ticket_values(1))
        add_row(session, ticket)
        kinds = [f"kind{n}" for n in range(ROWS_PER_INSERT * 2 + 1)]
        rows = [
            {"ticket_id": ticket.id, "at": AT, "actor": "a", "kind": kind, "detail": "{}"}
            for kind in kinds
        ]
        insert_rows(session.connection(), Event.__table__, rows)
        insert_rows(session.connection(), Event.__table__, [])  # nothing to do
        written = stored(session, "events")
    assert [row["kind"] for row in written] == kinds


def test_a_new_ticket_is_numbered_as_it_is_written(factory: sessionmaker[Session]) -> None:
    with factory() as session, session.begin():
        before = next_ticket_number(session)
        values = {k: v for k, v in ticket_values(0).items() if k != "number"}
        tickets = [new_row(Ticket, values) for _ in range(2)]
        for ticket in tickets:
            add_ticket_row(session, ticket, session.connection())
        numbered = [ticket.number for ticket in tickets]
        rows = stored(session, "tickets", ())
        after = next_ticket_number(session)
        session.expire_all()  # read back through the ORM, as later steps do
        assert [session.get(Ticket, t.id).number for t in tickets] == numbered  # type: ignore[union-attr]
    assert before < numbered[0] < numbered[1] < after
    assert [(row["id"], row["number"]) for row in rows] == [(t.id, t.number) for t in tickets]
    with pytest.raises(ValueError), factory() as session, session.begin():
        add_ticket_row(session, new_row(Ticket, ticket_values(9)), session.connection())


def test_a_query_answers_as_sqlalchemy_answers_it(factory: sessionmaker[Session]) -> None:
    with factory() as session, session.begin():
        ticket = Ticket(**ticket_values(next_ticket_number(session)))
        add_row(session, ticket)
        add_row(
            session,
            Message(
                ticket_id=ticket.id,
                message_id="<a@example.org>",
                dedupe_key="k",
                direction="in",
                author="carol@example.org",
                raw=b"",
                created_at=AT,
            ),
        )
        connection = session.connection()
        for key, message_id in (
            ("k", "<a@example.org>"),
            ("other", "<a@example.org>"),
            ("k", "<b>"),
        ):
            values = {
                "message_id": message_id,
                "key": key,
                "legacy": "none",
                "sender": "carol@example.org",
                "since": datetime(2026, 11, 30, tzinfo=UTC),
            }
            direct = _STORED.one(connection, values)
            assert tuple(direct) == tuple(connection.execute(_STORED.statement, values).one())
        assert tuple(direct) == (1, None, None)
        assert next_ticket_number(session) == ticket.number + 1


def test_errors_events_and_savepoints_are_sqlalchemys(factory: sessionmaker[Session]) -> None:
    seen: list[str] = []

    def record(*args: object) -> None:
        seen.append(str(args[2]))

    with factory() as session, session.begin():
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", record)
        try:
            add_row(session, Ticket(**ticket_values(1)))
            with pytest.raises(exc.IntegrityError), session.begin_nested():
                add_row(session, Ticket(**ticket_values(2)))
                add_row(session, Ticket(**ticket_values(1)))  # the number is unique
            session.expunge_all()
            numbers = session.scalars(select(Ticket.number)).all()
        finally:
            event.remove(engine, "before_cursor_execute", record)
    assert numbers == [1]  # the savepoint took the second ticket with it
    assert len([s for s in seen if s.startswith("INSERT INTO tickets")]) == 3


def test_savepoints_left_open_roll_back_only_their_own_work(
    factory: sessionmaker[Session],
) -> None:
    seen: list[str] = []

    def record(*args: object) -> None:
        seen.append(str(args[2]))

    with factory() as session, session.begin():
        engine = session.get_bind()
        leave_savepoints_open(session)
        event.listen(engine, "before_cursor_execute", record)
        try:
            for number in (1, 2, 3, 4):  # as the worker's batch: one savepoint per message
                try:
                    with session.begin_nested():
                        add_row(session, Ticket(**ticket_values(number)))
                        if number == 2:
                            with session.begin_nested():  # one within, left open too
                                add_row(session, Ticket(**ticket_values(20)))
                            raise RuntimeError("poison")
                        if number == 3:
                            add_row(session, Ticket(**ticket_values(1)))  # the number is unique
                except (RuntimeError, exc.IntegrityError):
                    session.expunge_all()
        finally:
            event.remove(engine, "before_cursor_execute", record)
    with factory() as session:
        numbers = session.scalars(select(Ticket.number).order_by(Ticket.number)).all()
    assert numbers == [1, 4]
    released = [s for s in seen if s.startswith("RELEASE SAVEPOINT")]
    assert len(released) == (0 if engine.dialect.name == "postgresql" else 3)
    event.listen(engine, "before_cursor_execute", record)
    try:  # the next transaction on the pooled connection releases as usual
        with factory() as session, session.begin(), session.begin_nested():
            add_row(session, Ticket(**ticket_values(5)))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert seen[-1].startswith("RELEASE SAVEPOINT")
    assert len([s for s in seen if s.startswith("ROLLBACK TO SAVEPOINT")]) == 2


def test_sqlite_datetimes_are_bound_as_sqlalchemy_binds_them() -> None:
    from sqlalchemy.dialects import sqlite

    table: Table = Event.__table__  # type: ignore[assignment]
    direct = Direct(select(table.c.id).where(table.c.at > bindparam("at")))
    [(_position, fast)] = direct._compiled(sqlite.dialect()).processed
    slow = table.c.at.type.dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
    assert fast is not slow and slow is not None
    india = timezone(timedelta(hours=5, minutes=30))
    values = [
        AT,
        LATER,
        datetime(2026, 1, 2, 3, 4, 5),  # naive, no microseconds
        datetime(1, 1, 1, tzinfo=india),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=india),
        date(2026, 5, 1),
        None,
    ]
    assert [fast(value) for value in values] == [slow(value) for value in values]


def test_a_new_row_has_only_columns() -> None:
    with pytest.raises(TypeError, match="no column 'numbr'"):
        new_row(Ticket, {"numbr": 1})


def test_a_default_computed_per_row_must_be_set() -> None:
    from sqlalchemy.dialects import sqlite

    direct = Direct(insert(Event.__table__), ["ticket_id", "actor", "kind", "detail"])
    with pytest.raises(ValueError, match="at has a default computed per row"):
        direct._compiled(sqlite.dialect())


def test_a_statement_with_an_expanding_parameter_is_refused() -> None:
    from sqlalchemy.dialects import sqlite

    table: Table = Ticket.__table__  # type: ignore[assignment]
    direct = Direct(select(table.c.id).where(table.c.number.in_([1, 2])))
    with pytest.raises(ValueError, match="expanding"):
        direct._compiled(sqlite.dialect())
