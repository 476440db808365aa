"""``postdesk serve``: run intake, the worker and the outbox sender until told to stop.

Stopping (SIGTERM/SIGINT): intake answers 421 to new commands, the worker finishes the message
in hand, the sender finishes its mail, then one summary line is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from sqlalchemy import func, select

from postdesk.daemon.config import Settings
from postdesk.daemon.intake.imap import imap_pollers
from postdesk.daemon.intake.smtp import IntakeHandler, start_smtp
from postdesk.daemon.outbound.lease import release_own_claims
from postdesk.daemon.outbound.sender import OutboxSender
from postdesk.daemon.reclaim import requeue_claims
from postdesk.daemon.runtime import Runtime, open_runtime
from postdesk.daemon.store.identity import daemon_id
from postdesk.daemon.workerproc import WorkerProcess
from postdesk.models.schema import OutboxItem

log = logging.getLogger("postdesk.serve")

SHUTDOWN_TIMEOUT_SECONDS = 25.0


class AlreadyRunning(Exception):
    """Another ``postdesk serve`` holds this data dir."""


def serve(settings: Settings) -> int:
    """Run the daemon in the foreground; returns the process exit status."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with _data_dir_lock(settings.data_dir):
        runtime = open_runtime(settings)
        asyncio.run(_run(runtime))
    return 0


async def _run(runtime: Runtime) -> None:
    settings = runtime.settings
    max_attempts = settings.processing.max_attempts
    reclaimed = requeue_claims(runtime.spool, runtime.factory, None, max_attempts)
    requeued = runtime.spool.recover() + reclaimed.requeued
    stop, shutdown = asyncio.Event(), asyncio.Event()
    worker = WorkerProcess(
        settings,
        runtime.secret,
        logging.getLogger().level,
        on_death=lambda pid: requeue_claims(runtime.spool, runtime.factory, pid, max_attempts),
    )
    wake, database_ok = worker.channel.wake, worker.channel.database_ok
    handler = IntakeHandler(settings, runtime.spool, wake, lambda: bool(database_ok.value))
    owner = daemon_id(settings.data_dir)
    await asyncio.to_thread(release_own_claims, runtime.factory, owner)
    sender = OutboxSender(settings, runtime.factory, owner=owner)
    pollers = imap_pollers(settings, runtime.factory, runtime.spool, wake, owner)
    worker.start()
    server = await start_smtp(handler, settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, shutdown.set)
    tasks = [asyncio.create_task(worker.supervise()), asyncio.create_task(sender.run(stop))]
    tasks += [asyncio.create_task(poller.run(stop)) for poller in pollers]
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
    handler.closing = True
    stop.set()
    await worker.stop(SHUTDOWN_TIMEOUT_SECONDS)
    _done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT_SECONDS)
    for task in pending:
        task.cancel()
    server.close()
    log.info(
        "postdesk stopped: accepted %d message(s), %d waiting in the spool, %d mail(s) in the outbox",
        handler.accepted,
        runtime.spool.pending(),
        await asyncio.to_thread(_outbox_pending, runtime),
    )


def _outbox_pending(runtime: Runtime) -> int:
    with runtime.factory() as session:
        query = select(func.count()).select_from(OutboxItem).where(OutboxItem.status == "pending")
        return int(session.execute(query).scalar_one())


@contextlib.contextmanager
def _data_dir_lock(data_dir: Path) -> Iterator[IO[str]]:
    with (data_dir / "serve.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(
                f"another postdesk serve is using {data_dir}; stop it or set helpdesk.data_dir"
            ) from None
        yield handle
