"""Crash points (R-17) inside a batch, the database under several workers (R-28) and plugins
that hang or raise (R-30): moved here from tests/test_batch.py, tests/test_workers.py and
tests/test_plugins_e2e.py, whose fixtures and helpers they share."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postdesk.daemon.config import ConfigError, load_settings
from postdesk.daemon.worker import DatabaseHealth, Worker
from tests.agentmail import GENEROUS_LIMITS
from tests.support import CUSTOMER, Daemon, SmtpSink, make_mail, send, wait_until, write_config
from tests.test_batch import BATCH, config, counts, open_from, spool_many
from tests.test_plugins_e2e import _serve

__all__ = ["config"]  # a fixture: imported so that pytest finds it here

# The worker of a crashing daemon: runs one batch and SIGKILLs itself at the chosen moment.
CRASHING_WORKER = """
import os, signal, sys
from postdesk.daemon import worker as worker_module
from postdesk.daemon.config import load_settings
from postdesk.daemon.intake.spool import Spool
from postdesk.daemon.runtime import open_runtime
from postdesk.daemon.steps import PIPELINE
from postdesk.daemon.worker import DatabaseHealth, Worker

config, moment = sys.argv[1], sys.argv[2]
runtime = open_runtime(load_settings(config, environ={}))
seen = []

def kill_at_fifth(ctx):
    seen.append(ctx.spool_id)
    if len(seen) == 5:
        os.kill(os.getpid(), signal.SIGKILL)

def kill(entry):
    os.kill(os.getpid(), signal.SIGKILL)

if moment == "inside":
    worker_module.PIPELINE = (*PIPELINE, kill_at_fifth)  # four savepoints released, fifth open
else:
    Spool.done = lambda self, entry: kill(entry)  # committed, no spool file settled yet
Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth()).process_batch()
print("not killed")
"""


@pytest.mark.parametrize("moment", ["inside", "after_commit"])
def test_r17_kill_9_in_a_batch_loses_and_doubles_nothing(config: Path, moment: str) -> None:
    setup = open_from(config)
    spool_many(setup, [f"crash {i}" for i in range(10)])
    setup.engine.dispose()
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_WORKER, str(config), moment],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert crashed.returncode == -9, crashed.stderr.decode()[-2000:]
    runtime = open_from(config)
    try:
        committed = counts(runtime)[0]
        assert committed == (0 if moment == "inside" else BATCH)
        claimed = 5 if moment == "inside" else BATCH
        assert runtime.spool.recover() == claimed  # the claimed files, back in the queue
        worker = Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth())
        outcomes = worker.drain()
        stored = [o for o in outcomes if o.disposition == "stored"]
        duplicates = [o for o in outcomes if o.disposition == "duplicate"]
        assert len(stored) == 10 - committed and len(duplicates) == committed
        assert counts(runtime) == (10, 10, 10), "one ticket, message and acknowledgement each"
        assert runtime.spool.pending() == 0
    finally:
        runtime.engine.dispose()


def _workers(daemon: Daemon) -> list[str]:
    """The pids of the worker processes of a running daemon."""
    assert daemon.process is not None
    pid = daemon.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.mark.postgres
def test_r28_two_workers_on_postgresql_never_process_one_message_twice(
    tmp_path: Path, postgres_url: str
) -> None:
    extra = "[processing]\nworkers = 2\nbatch_size = 5\n"
    daemon = Daemon(write_config(tmp_path, postgres_url, extra=extra), tmp_path, GENEROUS_LIMITS)
    daemon.start()
    try:
        assert len(wait_until(lambda: len(_workers(daemon)) == 2 and _workers(daemon))) == 2
        mails = [  # from 60 customers: one sender's flood of new tickets is capped
            make_mail(
                subject=f"parallel {n}",
                message_id=f"<p{n}@example.org>",
                sender=f"customer{n}@example.org",
            )
            for n in range(60)
        ]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda raw: send(daemon.port, raw)[0], mails))
        assert codes == [250] * 60
        wait_until(lambda: len(daemon.tickets()) == 60, timeout=120, what="60 tickets")
        ids = daemon.inbound_message_ids()
        assert sorted(ids) == sorted(f"<p{n}@example.org>" for n in range(60))
        acks = [row for row in daemon.outbox() if row.kind == "acknowledgement"]
        assert len(acks) == 60 and len({row.ticket_id for row in acks}) == 60
        assert daemon.spool_files() == []
        assert " duplicate " not in daemon.log() and " retry" not in daemon.log()
    finally:
        daemon.stop()


def test_r28_more_than_one_worker_on_sqlite_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite:///x.db", extra="[processing]\nworkers = 2\n")
    with pytest.raises(ConfigError, match=r"processing\.workers: more than one worker needs"):
        load_settings(str(config), environ={})
    zero = write_config(tmp_path, "sqlite:///x.db", extra="[processing]\nworkers = 0\n")
    with pytest.raises(ConfigError, match=r"processing\.workers"):
        load_settings(str(zero), environ={})


def test_r30_a_raising_and_a_hanging_plugin_never_delay_the_acknowledgement(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    hooks = [
        "postdesk_ticket_created(ticket)", "postdesk_message_added(ticket, message)",
        "postdesk_ticket_updated(ticket, changes)", "postdesk_notify(event, ticket, detail)",
        "postdesk_lookup_contact(email)", "postdesk_lookup_orders(email, text)",
        "postdesk_template_variables(template, ticket)",
    ]  # fmt: skip
    head = "import asyncio, time\nfrom postdesk.plugins import hookimpl\n"
    raising = head + "".join(
        f"@hookimpl\ndef {h}:\n    raise RuntimeError('boom')\n" for h in hooks
    )
    hanging = head + "".join(
        f"@hookimpl\nasync def {h}:\n    await asyncio.sleep(120)\n"
        if i % 2
        else f"@hookimpl\ndef {h}:\n    time.sleep(120)\n"
        for i, h in enumerate(hooks)
    )
    (tmp_path / "raising.py").write_text(raising)
    (tmp_path / "hanging.py").write_text(hanging)
    extra = '[plugins]\nenabled = ["raising", "hanging"]\ntimeout_seconds = 60\nlookup_timeout_seconds = 0.3\n'
    env = {"PYTHONPATH": str(tmp_path)}
    with _serve(tmp_path, sqlite_url, sink, extra, env) as daemon:
        send(daemon.port, make_mail(subject="Warm-up"))  # the worker process may still start
        wait_until(lambda: sink.to(CUSTOMER), timeout=30, what="first acknowledgement")
        for number in range(1, 4):
            started = time.monotonic()
            code, _ = send(daemon.port, make_mail(subject=f"Help {number}"))
            assert code == 250 and time.monotonic() - started < 2
            wait_until(
                lambda n=number: len(sink.to(CUSTOMER)) > n, timeout=6, what="acknowledgement"
            )
            # Lookups are cut off at lookup_timeout (0.3 s) and template variables too: the
            # acknowledgement is never held longer than that, and events do not hold it at all.
            assert time.monotonic() - started < 4
        assert len(daemon.tickets()) == 4
    log = daemon.log()
    assert "plugin raising: postdesk_lookup_contact failed; skipped" in log
    assert "plugin hanging: postdesk_lookup_contact took longer than 0.3 s; skipped" in log
