"""``postdesk serve``: run intake, the worker and the outbox sender until told to stop.

Stopping (SIGTERM/SIGINT): intake answers 421 to new commands, the worker finishes the message
in hand, the sender finishes its mail, then one summary line is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import ssl
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import IO

from sqlalchemy import func, select

from postdesk.daemon import pluginproc
from postdesk.daemon.config import Settings
from postdesk.daemon.intake.imap import imap_pollers
from postdesk.daemon.intake.smtp import IntakeHandler, start_smtp
from postdesk.daemon.ops.http import start_ops_http
from postdesk.daemon.ops.metrics import LiveSources
from postdesk.daemon.ops.tls import server_context
from postdesk.daemon.outbound.lease import release_own_claims
from postdesk.daemon.outbound.sender import OutboxSender
from postdesk.daemon.oversize import notice_sender
from postdesk.daemon.preflight import SERVE_LOCK, ensure_data_dir, ensure_smtp_listen
from postdesk.daemon.reclaim import requeue_claims
from postdesk.daemon.reports.schedule import weekly_reports
from postdesk.daemon.reports.web import ReportsPage
from postdesk.daemon.runtime import Runtime, limit_malloc_arenas, open_runtime, settle_heap
from postdesk.daemon.sla import digest, escalation
from postdesk.daemon.sla.rules import unstaffed_escalations
from postdesk.daemon.store.identity import daemon_id
from postdesk.daemon.workerproc import WorkerChannel, WorkerProcess
from postdesk.models.schema import OutboxItem

log = logging.getLogger("postdesk.serve")

SHUTDOWN_TIMEOUT_SECONDS = 25.0
DATA_GRACE_SECONDS = 20.0  # a DATA transfer in progress at a stop may finish within this
PLUGIN_DRAIN_SECONDS = 5.0  # events in flight when stopping


class AlreadyRunning(Exception):
    """Another ``postdesk serve`` holds this data dir."""


def serve(settings: Settings) -> int:
    """Run the daemon in the foreground; returns the process exit status.

    The data dir and the SMTP address are checked before the database is touched.
    """
    limit_malloc_arenas()
    tls = server_context(settings.smtp)  # a bad certificate stops start-up, naming the key
    ensure_data_dir(settings)
    with _data_dir_lock(settings.data_dir):
        ensure_smtp_listen(settings)
        runtime = open_runtime(settings)
        settle_heap()
        asyncio.run(_run(runtime, tls))
    return 0


async def _run(runtime: Runtime, tls: ssl.SSLContext | None = None) -> None:
    settings = runtime.settings
    max_attempts = settings.processing.max_attempts
    reclaimed = requeue_claims(runtime.spool, runtime.factory, None, max_attempts)
    requeued = runtime.spool.recover() + reclaimed.requeued
    stop, shutdown = asyncio.Event(), asyncio.Event()
    level = logging.getLogger().level

    def requeue(pid: int) -> object:
        return requeue_claims(runtime.spool, runtime.factory, pid, max_attempts)

    worker = WorkerProcess(settings, runtime.secret, level, on_death=requeue)
    workers = [worker] + [
        WorkerProcess(settings, runtime.secret, level, worker.channel, on_death=requeue)
        for _ in range(settings.processing.workers - 1)
    ]
    wake, database_ok = worker.channel.wake, worker.channel.database_ok
    handler = IntakeHandler(settings, runtime.spool, wake, lambda: bool(database_ok.value))
    plugins = runtime.services.plugins
    owner = daemon_id(settings.data_dir)
    await asyncio.to_thread(release_own_claims, runtime.factory, owner)
    sender = OutboxSender(settings, runtime.factory, on_alert=plugins.alert, owner=owner)
    pollers = imap_pollers(
        *(settings, runtime.factory, runtime.spool, wake, plugins.alert, owner),
        on_oversize=partial(notice_sender, runtime.services, runtime.factory),
    )
    helpers = (  # plugin hooks run there, never in a worker nor here
        [
            WorkerProcess(
                settings, runtime.secret, level, main=(pluginproc.NAME, pluginproc.run_plugins)
            )
        ]
        if pluginproc.wanted(plugins)
        else []
    )
    for each in workers + helpers:
        each.start()
    server = await start_smtp(handler, settings, tls)
    live = LiveSources(
        received=lambda: (
            {"smtp": handler.accepted} | {f"imap:{p.mailbox.name}": p.spooled for p in pollers}
        ),
        imap_errors=lambda: {p.mailbox.name: p.errors for p in pollers},
        worker_alive=lambda: all(w.process is not None and w.process.is_alive() for w in workers),
        serve_pid=os.getpid(),
    )
    reports = ReportsPage(settings, runtime.engine) if settings.http.listen else None
    http = await start_ops_http(settings, runtime.factory, runtime.spool, live, reports)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, shutdown.set)
    tasks = [asyncio.create_task(each.supervise()) for each in workers + helpers]
    loop.add_reader(worker.channel.committed_reader.fileno(), _on_commit, worker.channel, sender)
    tasks.append(asyncio.create_task(sender.run(stop)))
    tasks += [asyncio.create_task(poller.run(stop)) for poller in pollers]
    tasks.append(
        asyncio.create_task(weekly_reports(runtime.services, runtime.engine, runtime.factory, stop))
    )
    if runtime.services.sla.policies:
        tasks.append(asyncio.create_task(escalation.run(stop, runtime.services, runtime.factory)))
        for warning in unstaffed_escalations(settings):
            log.warning("%s", warning)
    if runtime.services.sla.digest is not None:
        tasks.append(asyncio.create_task(digest.run(stop, runtime.services, runtime.factory)))
    if settings.classifier.retrain_seconds:
        from postdesk.daemon.classify import schedule  # serve imports it only when it is on

        tasks.append(asyncio.create_task(schedule.run(stop, settings)))
    if requeued:
        wake()
    log.info(
        "postdesk serving SMTP on %s, database %s, data dir %s (config: %s)",
        settings.smtp.listen,
        runtime.engine.url.render_as_string(hide_password=True),
        settings.data_dir,
        settings.source,
    )
    await shutdown.wait()
    log.info("stopping: refusing new mail, finishing work in hand")
    loop.remove_reader(worker.channel.committed_reader.fileno())
    handler.closing = True
    stop.set()
    await asyncio.gather(*(each.stop(SHUTDOWN_TIMEOUT_SECONDS) for each in workers))
    await asyncio.gather(*(each.stop(SHUTDOWN_TIMEOUT_SECONDS) for each in helpers))  # then
    _done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT_SECONDS)
    for task in pending:
        task.cancel()
    await _let_data_finish(handler)
    server.close()
    if http is not None:
        http.close()
    await asyncio.to_thread(plugins.drain, PLUGIN_DRAIN_SECONDS)
    plugins.close()
    log.info(
        "postdesk stopped: accepted %d message(s), %d waiting in the spool, %d mail(s) in the outbox",
        handler.accepted,
        runtime.spool.pending(),
        await asyncio.to_thread(_outbox_pending, runtime),
    )


def _on_commit(channel: WorkerChannel, sender: OutboxSender) -> None:
    """A worker committed a batch: the sender claims its mail now, not at its next poll."""
    channel.take_committed()
    sender.wake()


async def _let_data_finish(handler: IntakeHandler) -> None:
    """Wait (up to DATA_GRACE_SECONDS) for messages still arriving to be spooled and answered,
    so that a client in the middle of DATA when the stop came gets its 250 (R-11)."""
    deadline = time.monotonic() + DATA_GRACE_SECONDS
    if handler.receiving:
        log.info(
            "waiting up to %.0f s for %d message(s) still arriving",
            DATA_GRACE_SECONDS,
            handler.receiving,
        )
    while handler.receiving and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def _outbox_pending(runtime: Runtime) -> int:
    with runtime.factory() as session:
        query = select(func.count()).select_from(OutboxItem).where(OutboxItem.status == "pending")
        return int(session.execute(query).scalar_one())


@contextlib.contextmanager
def _data_dir_lock(data_dir: Path) -> Iterator[IO[str]]:
    with (data_dir / SERVE_LOCK).open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(
                f"another postdesk serve is using {data_dir}; stop it or set helpdesk.data_dir"
            ) from None
        yield handle
