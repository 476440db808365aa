"""Shared fixtures: databases (SQLite and a fresh PostgreSQL database), a real SMTP sink, and the
real daemon run as a subprocess on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.store.db import make_engine, session_factory, upgrade_schema
from tests.support import Daemon, SmtpSink, write_config

POSTGRES_ADMIN_URL = os.environ.get(
    "POSTDESK_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _postgres_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        engine = create_engine(POSTGRES_ADMIN_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {type(error).__name__}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the PostgreSQL server; skips outside CI when it is unreachable."""
    problem = _postgres_available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem} (CI is set: the PostgreSQL tests must run)")
        pytest.skip(problem)
    return POSTGRES_ADMIN_URL


def fresh_postgres_database(admin_url: str) -> Iterator[str]:
    """Create a database for one test and drop it afterwards."""
    name = f"postdesk_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs once on SQLite and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'postdesk.db'}"
        return
    yield from fresh_postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a migrated database (SQLite, and PostgreSQL when reachable)."""
    engine = make_engine(database_url)
    upgrade_schema(engine)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one test."""
    yield from fresh_postgres_database(postgres_server)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database in the test's data dir, for tests that need not run on both."""
    return f"sqlite:///{tmp_path / 'data' / 'postdesk.db'}"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    """A real SMTP server on loopback that records every mail the daemon sends."""
    server = SmtpSink()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def daemon(tmp_path: Path, database_url: str, sink: SmtpSink) -> Iterator[Daemon]:
    """The real daemon (``postdesk serve``) on SQLite or PostgreSQL, relaying to the sink."""
    config = write_config(tmp_path, database_url, relay=f"smtp://127.0.0.1:{sink.port}")
    process = Daemon(config, tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()
