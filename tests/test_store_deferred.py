"""On PostgreSQL, INSERTs whose outcome nobody reads are held back and sent with the next
statement in one round trip (``store.direct``): order, commit and rollback are as if each ran
at once, and an error stays with the message whose statement failed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, exc, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import load_settings
from postdesk.daemon.intake.spool import Envelope
from postdesk.daemon.runtime import Runtime, open_runtime
from postdesk.daemon.store.db import (
    insert_ignore,
    make_engine,
    send_pending,
    session_factory,
    upgrade_schema,
)
from postdesk.daemon.store.direct import _QUEUED
from postdesk.daemon.worker import DatabaseHealth, Worker
from postdesk.models.schema import Contact, Participant, Ticket
from tests.conftest import fresh_postgres_database
from tests.support import make_mail, write_config

NOW = "2026-12-01 10:00:00+00"


def queued(connection: Connection) -> int:
    """How many statements wait on ``connection``."""
    return len(connection.__dict__.get(_QUEUED, []))


def contact(session: Session, email: str) -> None:
    insert_ignore(
        session, Contact.__table__, {"email": email, "name": "", "created_at": NOW}, ["email"]
    )


pytestmark = pytest.mark.postgres  # statements are held back on PostgreSQL only


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database."""
    yield from fresh_postgres_database(postgres_server)


@pytest.fixture
def postgres(pg_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a migrated PostgreSQL database."""
    engine = make_engine(pg_url)
    upgrade_schema(engine)
    yield session_factory(engine)
    engine.dispose()


def test_a_held_back_insert_is_sent_before_the_next_statement(
    postgres: sessionmaker[Session],
) -> None:
    with postgres() as session, session.begin():
        contact(session, "carol@example.org")
        assert queued(session.connection()) == 1
        found = session.scalar(select(Contact.email))  # an ORM query: the queue goes first
        assert found == "carol@example.org" and queued(session.connection()) == 0


def test_the_commit_sends_what_is_held_back(postgres: sessionmaker[Session]) -> None:
    with postgres() as session, session.begin():
        contact(session, "carol@example.org")
        contact(session, "dave@example.org")
    with postgres() as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 2


def test_an_error_is_raised_by_the_statement_it_went_with(
    postgres: sessionmaker[Session],
) -> None:
    with postgres() as session, session.begin():
        values = {"ticket_id": 999, "email": "carol@example.org", "role": "requester"}
        insert_ignore(session, Participant.__table__, values, ["ticket_id", "email"])  # no ticket
        with pytest.raises(exc.IntegrityError):
            send_pending(session)
        session.rollback()


def test_a_rollback_to_a_savepoint_drops_what_is_held_back(
    postgres: sessionmaker[Session],
) -> None:
    with postgres() as session, session.begin():
        contact(session, "carol@example.org")
        nested = session.begin_nested()  # the SAVEPOINT sends carol
        values = {"ticket_id": 999, "email": "carol@example.org", "role": "requester"}
        insert_ignore(session, Participant.__table__, values, ["ticket_id", "email"])
        contact(session, "dave@example.org")
        nested.rollback()  # the failing insert and dave are never sent
        assert queued(session.connection()) == 0
        contact(session, "erin@example.org")
    with postgres() as session:
        emails = session.scalars(select(Contact.email).order_by(Contact.email)).all()
    assert emails == ["carol@example.org", "erin@example.org"]


def test_a_rollback_drops_what_is_held_back(postgres: sessionmaker[Session]) -> None:
    with postgres() as session:
        with session.begin():
            contact(session, "carol@example.org")
            session.rollback()
        with session.begin():
            contact(session, "dave@example.org")
    with postgres() as session:
        assert session.scalars(select(Contact.email)).all() == ["dave@example.org"]


BATCH = """
[processing]
batch_size = 20
batch_ms = 100000
"""


@pytest.fixture
def runtime(tmp_path: Path, pg_url: str) -> Iterator[Runtime]:
    """A daemon's runtime on PostgreSQL whose worker commits up to 20 messages together."""
    opened = open_runtime(
        load_settings(str(write_config(tmp_path, pg_url, extra=BATCH)), environ={})
    )
    yield opened
    opened.engine.dispose()


def test_a_held_back_insert_failing_fails_its_own_message_only(runtime: Runtime) -> None:
    """A trigger refuses one sender's participant row (an INSERT held back to the end of the
    message): that message is rolled back to its savepoint and retried, the others of the
    batch are stored."""
    with runtime.engine.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF NEW.email ="
                " 'boom@example.org' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW;"
                " END $$ LANGUAGE plpgsql"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON participants"
                " FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        )
    for number, sender in enumerate(["carol@example.org", "boom@example.org", "dave@example.org"]):
        raw = make_mail(subject=f"Printer {number}", sender=sender, message_id=f"<d-{number}@x>")
        runtime.spool.write(raw, Envelope(sender, ("support@example.com",), "smtp", time.time()))
    worker = Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth())
    outcomes = worker.process_batch()
    assert [outcome.disposition for outcome in outcomes] == ["stored", "retry", "stored"]
    assert "refused" in outcomes[1].detail
    with runtime.factory() as session:
        requesters = session.scalars(select(Ticket.requester).order_by(Ticket.id)).all()
    assert requesters == ["carol@example.org", "dave@example.org"]
