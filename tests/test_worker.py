"""The worker's crash boundary: retries, quarantine after three failures, deferral on outages."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc

from postdesk.daemon import worker as worker_module
from postdesk.daemon.config import load_settings
from postdesk.daemon.intake.spool import Envelope
from postdesk.daemon.pipeline import MessageContext
from postdesk.daemon.runtime import Runtime, open_runtime
from postdesk.daemon.steps import PIPELINE
from postdesk.daemon.worker import DatabaseHealth, Worker
from postdesk.models.schema import QuarantineItem
from tests.support import make_mail
from tests.test_imap import nested_mime


@pytest.fixture
def runtime(tmp_path: Path, database_url: str) -> Iterator[Runtime]:
    """An opened runtime (schema, services, spool) on SQLite or PostgreSQL."""
    settings = load_settings(None, environ={})
    helpdesk = dataclasses.replace(
        settings.helpdesk, database=database_url, data_dir=str(tmp_path / "data")
    )
    opened = open_runtime(dataclasses.replace(settings, helpdesk=helpdesk))
    yield opened
    opened.engine.dispose()


def spool(runtime: Runtime, subject: str) -> str:
    raw = make_mail(subject=subject, to="support@localhost")
    envelope = Envelope("carol@example.org", ("support@localhost",), "smtp", time.time())
    return runtime.spool.write(raw, envelope)


def poisoned(subject: str) -> object:
    """A pipeline step that fails for one subject only, as a bug would."""

    def step(ctx: MessageContext) -> None:
        if ctx.parsed.subject == subject:
            raise RuntimeError(f"injected failure for {subject}")

    return step


def test_third_failure_quarantines_and_the_rest_flow(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "PIPELINE", (PIPELINE[0], poisoned("poison"), *PIPELINE[1:]))
    worker = Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth())
    poison_id = spool(runtime, "poison")
    spool(runtime, "healthy one")
    spool(runtime, "healthy two")

    outcomes = worker.drain()
    poison = [o.disposition for o in outcomes if o.spool_id == poison_id]
    assert poison == ["retry", "retry", "held"]
    assert sorted(o.disposition for o in outcomes if o.spool_id != poison_id) == [
        "stored",
        "stored",
    ]
    with runtime.factory() as session:
        (held,) = session.query(QuarantineItem).all()
    assert held.reason.startswith("failed 3 times, last: RuntimeError: injected failure")
    assert b"Subject: poison" in held.raw and held.attempts == 3
    assert runtime.spool.pending() == 0


def test_an_interrupted_attempt_counts_after_restart(runtime: Runtime) -> None:
    spool(runtime, "crashed mid-way")
    claimed = runtime.spool.claim()  # a worker took it, then the process died
    assert claimed is not None
    assert runtime.spool.recover() == 1
    again = runtime.spool.claim()
    assert again is not None and again.attempts == 1


def test_database_outage_defers_without_counting(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def database_down(ctx: MessageContext) -> None:
        raise sa_exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    health = DatabaseHealth()
    worker = Worker(runtime.services, runtime.factory, runtime.spool, health)
    spool(runtime, "during the outage")
    monkeypatch.setattr(worker_module, "PIPELINE", (database_down,))
    (outcome,) = worker.drain()
    assert outcome.disposition == "deferred" and not health.ok
    monkeypatch.setattr(worker_module, "PIPELINE", PIPELINE)
    (outcome,) = worker.drain()
    assert outcome.disposition == "stored" and outcome.created and health.ok


def test_a_refused_message_held_one_by_one_keeps_its_message_id(runtime: Runtime) -> None:
    """The Message-ID of mail the parser refuses comes from its spool file, read before the
    file is settled (the one-by-one path, as after a failed batch)."""
    envelope = Envelope("carol@example.org", ("support@localhost",), "smtp", time.time())
    runtime.spool.write(nested_mime(60), envelope)
    worker = Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth())
    entry = runtime.spool.claim()
    assert entry is not None
    outcome = worker.process(entry)
    assert (outcome.disposition, outcome.message_id) == ("held", "<poison@example.org>")
    assert runtime.spool.pending() == 0
