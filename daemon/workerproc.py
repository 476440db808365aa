"""The worker in its own process, so parsing and storing never slow the SMTP event loop.

``serve`` starts ``processing.workers`` of them (one unless the database is PostgreSQL), all
draining one spool: each claims its own files by an atomic rename. It shares a ``WorkerChannel`` with intake: a stopping
flag, the database-health flag that intake reads to answer 451 while the database is down, a
wake-up pipe written after each spool write, and a pipe the worker writes after each batch it
committed, which wakes the outbox sender in ``serve``. The process dies with its parent, and the
parent restarts it if it dies on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess

from postdesk.daemon.classify.loader import preload as preload_models
from postdesk.daemon.config import Settings
from postdesk.daemon.ops.counters import CountsRecorder
from postdesk.daemon.ops.logs import LOG_FORMAT, use_log_format
from postdesk.daemon.runtime import build_runtime, limit_malloc_arenas, settle_heap
from postdesk.daemon.worker import DatabaseHealth, Flag, Worker

log = logging.getLogger("postdesk.worker")

RESTART_DELAY_SECONDS = 1.0
PLUGIN_DRAIN_SECONDS = 5.0
DOWN_PROBE_SECONDS = 1.0  # how often the worker asks a database that is down
WORKER_NICENESS = 10
COUNTS_SECONDS = 1.0  # a busy worker rewrites its counts file at most this often
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerChannel:
    """What intake and the worker process share.

    Nothing here can block on the other side: a worker killed at any instant must never hang
    intake. So the flags are lock-free shared bytes and wake-ups go through a non-blocking
    pipe (``multiprocessing.Event.set`` waits for every sleeper to acknowledge, and a killed
    sleeper never does).
    """

    stopping: Flag
    database_ok: Flag
    wake_reader: Connection
    wake_writer: Connection
    committed_reader: Connection
    committed_writer: Connection

    @classmethod
    def create(cls, context: SpawnContext) -> WorkerChannel:
        """New shared flags and pipes (wake-up, committed), usable from both processes."""
        reader, writer = context.Pipe(duplex=False)
        committed_reader, committed_writer = context.Pipe(duplex=False)
        for end in (writer, committed_reader, committed_writer):
            os.set_blocking(end.fileno(), False)
        stopping = context.Value("b", 0, lock=False)
        database_ok = context.Value("b", 1, lock=False)
        return cls(stopping, database_ok, reader, writer, committed_reader, committed_writer)

    def wake(self) -> None:
        """Nudge the worker; never blocks (a full pipe already holds a nudge)."""
        _nudge(self.wake_writer)

    def committed(self) -> None:
        """In the worker: tell serve a batch was committed; never blocks."""
        _nudge(self.committed_writer)

    def take_committed(self) -> None:
        """In serve: consume the worker's commit nudges (the reader never blocks)."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.committed_reader.fileno(), 65536)

    def sleep(self, timeout: float) -> None:
        """In the worker: wait until nudged or ``timeout`` passes, consuming the nudges."""
        if self.wake_reader.poll(timeout):
            os.read(self.wake_reader.fileno(), 65536)


def _nudge(writer: Connection) -> None:
    """One byte into a non-blocking pipe; a full pipe already holds a nudge."""
    with contextlib.suppress(BlockingIOError, BrokenPipeError):
        os.write(writer.fileno(), b"!")


ChildMain = Callable[[Settings, bytes, "WorkerChannel", int, int], None]


class WorkerProcess:
    """Starts, supervises and stops the worker process (or another child of serve: the
    plugins process, ``daemon/pluginproc.py``)."""

    def __init__(
        self,
        settings: Settings,
        secret: bytes,
        log_level: int,
        channel: WorkerChannel | None = None,
        on_death: Callable[[int], object] | None = None,
        main: tuple[str, ChildMain] | None = None,
    ) -> None:
        """A worker for ``settings``; pass the ``channel`` of another to share its flags and pipe.

        ``on_death(pid)`` runs (in a thread) after the worker died, before its restart.
        ``main`` is another child's (name, entry point), called like :func:`run_worker`.
        """
        self.settings = settings
        self.on_death = on_death
        self.secret = secret
        self.log_level = log_level
        self.name, self.main = main or ("worker", run_worker)
        self.context = multiprocessing.get_context("spawn")
        self.channel = channel or WorkerChannel.create(self.context)
        self.process: SpawnProcess | None = None

    def start(self) -> None:
        """Start (or restart) the worker process."""
        self.process = self.context.Process(
            target=self.main,
            args=(self.settings, self.secret, self.channel, os.getpid(), self.log_level),
            name=f"postdesk-{self.name}",
            daemon=True,
        )
        self.process.start()

    async def supervise(self) -> None:
        """Restart the worker whenever it dies before stopping began."""
        while not self.channel.stopping.value:
            await asyncio.sleep(RESTART_DELAY_SECONDS)
            died = self.process is not None and not self.process.is_alive()
            if died and not self.channel.stopping.value:
                assert self.process is not None
                log.error(
                    "%s process exited with %s; restarting it", self.name, self.process.exitcode
                )
                if self.on_death is not None and self.process.pid is not None:
                    await asyncio.to_thread(self.on_death, self.process.pid)
                self.start()
                self.channel.wake()

    async def stop(self, timeout: float) -> None:
        """Ask the worker to finish the message in hand and exit; terminate it after ``timeout``."""
        self.channel.stopping.value = 1
        self.channel.wake()
        if self.process is None:
            return
        await asyncio.to_thread(self.process.join, timeout)
        if self.process.is_alive():
            log.error("%s did not stop within %.0f s; terminating it", self.name, timeout)
            self.process.terminate()
            await asyncio.to_thread(self.process.join, 5)


class ThrottledCounts:
    """Publishes a worker's counts file at most every ``COUNTS_SECONDS`` while it is busy, and
    at once when it is about to wait: a rewrite per batch cost ~0.5 ms of CPU, and batches are
    small when several workers share the cores."""

    def __init__(self, counts: CountsRecorder, clock: Callable[[], float] = time.monotonic) -> None:
        self.counts = counts
        self.clock = clock
        self.published = clock()
        self.pending = False  # outcomes counted since the last publish

    def batch_done(self) -> None:
        """After a batch: publish if the last publish is ``COUNTS_SECONDS`` old."""
        self.pending = True
        if self.clock() - self.published >= COUNTS_SECONDS:
            self.idle()

    def idle(self) -> None:
        """Before waiting (or exiting): publish what was counted since the last publish."""
        if self.pending:
            self.counts.publish()
            self.published, self.pending = self.clock(), False


def run_worker(
    settings: Settings, secret: bytes, channel: WorkerChannel, parent: int, log_level: int
) -> None:
    """Entry point of the worker process: drain the spool until told to stop.

    Start-up touches no database (the parent migrated and loaded the secret), so the worker
    starts even during a database outage and reports it through the health flag.
    """
    limit_malloc_arenas()
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    # Answering SMTP clients is what cannot wait; processing may lag behind under load.
    os.nice(WORKER_NICENESS)
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    use_log_format(settings.log.format)
    runtime = build_runtime(settings, secret)
    preload_models(settings.data_dir)  # scikit-learn and the models, before the first message
    settle_heap()  # the models too
    health = DatabaseHealth(channel.database_ok)
    counts = CountsRecorder(settings.data_dir, parent)
    worker = Worker(runtime.services, runtime.factory, runtime.spool, health, counts.count)
    journal = runtime.services.plugins.journal  # plugin events: re-run a dead worker's
    journal.fire_elsewhere(parent)  # the plugins process fires them (daemon/pluginproc.py)
    runtime.services.plugins.look_up_elsewhere()  # and answers the lookups
    runtime.services.releases.committed = channel.committed  # released mail: send it now
    published = ThrottledCounts(counts)
    while not channel.stopping.value and os.getppid() == parent:
        if not health.ok and not worker.database_answers():
            published.idle()  # the deferred outcomes count while the database is down
            channel.sleep(DOWN_PROBE_SECONDS)  # fixed and short: mail flows soon after recovery
            continue
        journal.sweep(runtime.factory)
        if worker.process_batch():
            channel.committed()  # the outbox sender claims the batch's mail now
            published.batch_done()
        else:
            published.idle()
            channel.sleep(1.0)
    published.idle()
    runtime.services.plugins.drain(PLUGIN_DRAIN_SECONDS)  # events of the last messages
    journal.sweep(runtime.factory, force=True)  # forget the answered ones before exiting
    runtime.engine.dispose()


def die_with_parent() -> None:
    """On Linux, have the kernel kill this process when ``serve`` dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
