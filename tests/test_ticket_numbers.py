"""Ticket numbers: unique across concurrent transactions, and on PostgreSQL never a lock that
makes one worker's open batch hold up another's (migration 0009's sequence)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import insert, text

from postdesk.daemon.store.db import (
    alembic_config,
    make_engine,
    next_shared_value,
    next_ticket_number,
    session_factory,
    transaction,
    upgrade_schema,
)
from postdesk.models.schema import Counter, Ticket


def test_ticket_numbers_count_up_from_one(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade_schema(engine)
    factory = session_factory(engine)
    with transaction(factory) as session:
        first = [next_ticket_number(session) for _ in range(3)]
    with transaction(factory) as session:
        later = next_ticket_number(session)
    engine.dispose()
    assert first == [1, 2, 3] and later == 4


def test_postgres_numbers_do_not_wait_for_an_open_transaction(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    upgrade_schema(engine)
    factory = session_factory(engine)
    with factory() as held, held.begin():
        mine = next_ticket_number(held)
        turn = next_shared_value(held, "rr:billing")
        # A second worker, while the first batch is still open: with a lock it would time out.
        with factory() as other, other.begin():
            other.execute(text("SET LOCAL lock_timeout = '2s'"))
            theirs = next_ticket_number(other)
            next_turn = next_shared_value(other, "rr:billing")
        held.rollback()  # the first batch fails: its number is a gap, never reused
    with transaction(factory) as session:
        after = next_ticket_number(session)
    engine.dispose()
    assert (mine, theirs, after) == (1, 2, 3)
    assert (turn, next_turn) == (1, 2)


def test_postgres_sequence_continues_after_the_counter_row(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    with engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, "0008_reports")
        connection.execute(insert(Counter.__table__).values(name="ticket_number", value=41))
        connection.execute(
            insert(Ticket.__table__).values(number=40, subject="old", requester="a@example.org")
        )
    upgrade_schema(engine)
    with transaction(session_factory(engine)) as session:
        number = next_ticket_number(session)
    engine.dispose()
    assert number == 42
