"""The worker in its own process, so parsing and storing never slow the SMTP event loop.

``serve`` starts one ``WorkerProcess``. It shares three things with intake: a stop event, a
wake event (set after each spool write) and the database-health flag that intake reads to
answer 451 while the database is down. The process dies with its parent, and the parent
restarts it if it dies on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

from postdesk.daemon.config import Settings
from postdesk.daemon.runtime import build_runtime
from postdesk.daemon.worker import DatabaseHealth, Worker

log = logging.getLogger("postdesk.worker")

RESTART_DELAY_SECONDS = 1.0
WORKER_NICENESS = 10
PR_SET_PDEATHSIG = 1
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class WorkerChannel:
    """What intake and the worker process share."""

    stop: Event
    wake: Event
    database_ok: Synchronized[int]

    @classmethod
    def create(cls, context: SpawnContext) -> WorkerChannel:
        """New shared events and flag, usable from both processes."""
        return cls(context.Event(), context.Event(), context.Value("b", 1))


class WorkerProcess:
    """Starts, supervises and stops the worker process."""

    def __init__(self, settings: Settings, secret: bytes, log_level: int) -> None:
        self.settings = settings
        self.secret = secret
        self.log_level = log_level
        self.context = multiprocessing.get_context("spawn")
        self.channel = WorkerChannel.create(self.context)
        self.process: SpawnProcess | None = None

    def start(self) -> None:
        """Start (or restart) the worker process."""
        self.process = self.context.Process(
            target=run_worker,
            args=(self.settings, self.secret, self.channel, os.getpid(), self.log_level),
            name="postdesk-worker",
            daemon=True,
        )
        self.process.start()

    async def supervise(self) -> None:
        """Restart the worker whenever it dies before ``stop`` is set."""
        while not self.channel.stop.is_set():
            await asyncio.sleep(RESTART_DELAY_SECONDS)
            if (
                self.process is not None
                and not self.process.is_alive()
                and not self.channel.stop.is_set()
            ):
                log.error("worker process exited with %s; restarting it", self.process.exitcode)
                self.start()

    async def stop(self, timeout: float) -> None:
        """Ask the worker to finish the message in hand and exit; terminate it after ``timeout``."""
        self.channel.stop.set()
        self.channel.wake.set()
        if self.process is None:
            return
        await asyncio.to_thread(self.process.join, timeout)
        if self.process.is_alive():
            log.error("worker did not stop within %.0f s; terminating it", timeout)
            self.process.terminate()
            await asyncio.to_thread(self.process.join, 5)


def run_worker(
    settings: Settings, secret: bytes, channel: WorkerChannel, parent: int, log_level: int
) -> None:
    """Entry point of the worker process: drain the spool until told to stop.

    Start-up touches no database (the parent migrated and loaded the secret), so the worker
    starts even during a database outage and reports it through the health flag.
    """
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    # Answering SMTP clients is what cannot wait; processing may lag behind under load.
    os.nice(WORKER_NICENESS)
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    runtime = build_runtime(settings, secret)
    health = DatabaseHealth(channel.database_ok)
    worker = Worker(runtime.services, runtime.factory, runtime.spool, health)
    while not channel.stop.is_set() and os.getppid() == parent:
        if not health.ok and not worker.database_answers():
            channel.stop.wait(health.backoff())
            continue
        channel.wake.clear()
        if worker.process_next() is None:
            channel.wake.wait(1.0)
    runtime.engine.dispose()


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this process when ``serve`` dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
