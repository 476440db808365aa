"""Group commit: many messages per transaction, each in its own savepoint, crash-safe.

A poison message in the middle of a batch rolls back only its own savepoint; a worker killed
with SIGKILL inside a batch, or between the commit and the settling of the spool files, loses
and doubles nothing once the spool is recovered and drained again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from postdesk.daemon import worker as worker_module
from postdesk.daemon.config import ConfigError, load_settings
from postdesk.daemon.intake.spool import Envelope
from postdesk.daemon.runtime import Runtime, open_runtime
from postdesk.daemon.steps import PIPELINE
from postdesk.daemon.worker import DatabaseHealth, Worker
from postdesk.models.schema import Message, OutboxItem, QuarantineItem, Ticket
from tests.support import make_mail, write_config
from tests.test_worker import poisoned

BATCH = 7


def open_from(config: Path) -> Runtime:
    """The runtime of the daemon configured by ``config``."""
    return open_runtime(load_settings(str(config), environ={}))


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    """A configuration with batches of 7 messages and a generous time limit."""
    return write_config(
        tmp_path, database_url, extra="[processing]\nbatch_size = 7\nbatch_ms = 60000\n"
    )


@pytest.fixture
def runtime(config: Path) -> Iterator[Runtime]:
    """The opened runtime for ``config``."""
    opened = open_from(config)
    yield opened
    opened.engine.dispose()


def spool_many(runtime: Runtime, subjects: list[str]) -> list[str]:
    """Spool one new-ticket mail per subject, in order; their spool ids."""
    ids = []
    for subject in subjects:
        raw = make_mail(subject=subject, to="support@localhost")
        envelope = Envelope("carol@example.org", ("support@localhost",), "smtp", time.time())
        ids.append(runtime.spool.write(raw, envelope))
    return ids


def counts(runtime: Runtime) -> tuple[int, int, int]:
    """Tickets, inbound messages and outbox rows in the database."""
    with runtime.factory() as session:
        tickets = session.scalar(select(func.count()).select_from(Ticket))
        inbound = session.scalar(
            select(func.count()).select_from(Message).where(Message.direction == "in")
        )
        outbox = session.scalar(select(func.count()).select_from(OutboxItem))
    return tickets or 0, inbound or 0, outbox or 0


def test_a_batch_commits_together_and_settles_after(runtime: Runtime) -> None:
    spool_many(runtime, [f"message {i}" for i in range(10)])
    worker = Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth())
    first = worker.process_batch()
    assert [o.disposition for o in first] == ["stored"] * BATCH
    assert runtime.spool.pending() == 3
    assert counts(runtime) == (BATCH, BATCH, BATCH)
    rest = worker.drain()
    assert [o.disposition for o in rest] == ["stored"] * 3
    assert counts(runtime) == (10, 10, 10) and runtime.spool.pending() == 0


def test_the_same_mail_twice_in_one_batch_is_stored_once(runtime: Runtime) -> None:
    raw = make_mail(subject="twice", to="support@localhost")
    envelope = Envelope("carol@example.org", ("support@localhost",), "smtp", time.time())
    runtime.spool.write(raw, envelope)
    runtime.spool.write(raw, envelope)
    worker = Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth())
    assert [o.disposition for o in worker.process_batch()] == ["stored", "duplicate"]
    assert counts(runtime) == (1, 1, 1)


def test_poison_in_the_middle_of_a_batch(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "PIPELINE", (PIPELINE[0], poisoned("poison"), *PIPELINE[1:]))
    subjects = ["one", "two", "three", "poison", "five", "six", "seven"]
    ids = spool_many(runtime, subjects)
    worker = Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth())
    batch = worker.process_batch()
    assert [o.disposition for o in batch] == ["stored"] * 3 + ["retry"] + ["stored"] * 3
    assert counts(runtime) == (6, 6, 6), "the others commit, the poison one left no trace"
    later = [worker.process_batch(), worker.process_batch(), worker.process_batch()]
    assert [[o.disposition for o in b] for b in later] == [["retry"], ["held"], []]
    with runtime.factory() as session:
        (held,) = session.scalars(select(QuarantineItem)).all()
    assert held.spool_id == ids[3] and held.attempts == 3
    assert held.reason.startswith("failed 3 times, last: RuntimeError: injected failure")
    assert counts(runtime) == (6, 6, 6) and runtime.spool.pending() == 0


def test_poison_after_its_ticket_is_written(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows the poison message wrote go with its savepoint; the next message may be given
    the same row ids (SQLite) and must not meet the poison message's objects in the session."""
    monkeypatch.setattr(worker_module, "PIPELINE", (*PIPELINE, poisoned("poison")))
    spool_many(runtime, ["one", "poison", "three", "four"])
    worker = Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth())
    batch = worker.process_batch()
    assert [o.disposition for o in batch] == ["stored", "retry", "stored", "stored"]
    assert counts(runtime) == (3, 3, 3)
    with runtime.factory() as session:
        subjects = session.scalars(select(Ticket.subject).order_by(Ticket.id)).all()
    assert subjects == ["one", "three", "four"]


def test_batch_settings_are_checked(tmp_path: Path) -> None:
    for extra, key in (("batch_size = 0", "batch_size"), ("batch_ms = -1", "batch_ms")):
        config = write_config(tmp_path, "sqlite:///x.db", extra=f"[processing]\n{extra}\n")
        with pytest.raises(ConfigError, match=f"processing.{key}"):
            load_settings(str(config), environ={})
    settings = load_settings(None, environ={})
    assert (settings.processing.batch_size, settings.processing.batch_ms) == (50, 200)
