"""The in-process worker's instructions per new-ticket mail, counted by callgrind: steady on a
shared machine, where CPU time is not.

Only ``Worker.drain`` is counted (instrumentation is switched on and off around it with
``callgrind_control``); batches are fixed at 20 messages, and the worker's clock is a steady one
(a Tuesday 10:00 UTC, 1 ms on at each reading), so the count depends neither on how fast the
machine is (the caps' hourly total is counted again each second) nor on the time of day (SLA
business hours). Compare two checkouts in one go::

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.%p \\
        python bench/worker_instructions.py 60
    PYTHONPATH=<folder holding postdesk/{daemon,models,plugins,templates} of another checkout> \\
        valgrind ... python bench/worker_instructions.py 60

and divide the "Collected" count valgrind prints by N (about 1.5 minutes each). A second
argument, a folder holding trained ``spam.skops``/``category.skops`` (``postdesk train``), counts
the worker with the classifier's models.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_pipeline import write_config
from bench_smtp import free_port, message

from postdesk.daemon.config import load_settings
from postdesk.daemon.intake.spool import Envelope
from postdesk.daemon.runtime import open_runtime
from postdesk.daemon.worker import DatabaseHealth, Worker

BATCHES = "[processing]\nbatch_ms = 1000000\nbatch_size = 20"
WARM_UP = 3  # mails processed before counting: imports, caches, compiled statements


def instrument(state: str) -> None:
    """Switch callgrind's instrumentation of this process ``on`` or ``off``."""
    command = ["callgrind_control", "-i", state, str(os.getpid())]
    subprocess.run(command, check=True, capture_output=True)


def steady_clock() -> Callable[[], datetime]:
    """A clock from Tuesday 1 December 2026, 10:00 UTC, 1 ms later at each reading."""
    start, readings = datetime(2026, 12, 1, 10, tzinfo=UTC), itertools.count()
    return lambda: start + timedelta(milliseconds=next(readings))


def main() -> None:
    """Spool N + warm-up new-ticket mails, warm up, then drain N with instrumentation on
    (with the models in the folder given second, if any)."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    with tempfile.TemporaryDirectory() as workdir:
        config = write_config(Path(workdir), free_port(), extra=BATCHES)
        if len(sys.argv) > 2:  # the models are loaded while warming up
            shutil.copytree(sys.argv[2], Path(workdir) / "data" / "models")
        runtime = open_runtime(load_settings(str(config), environ={}))
        for number in range(count + WARM_UP):
            envelope = Envelope("customer@example.org", ("support@example.com",), "bench", 0.0)
            runtime.spool.write(message(number, 4000).replace(b"\n", b"\r\n"), envelope)
        services = dataclasses.replace(runtime.services, clock=steady_clock())
        worker = Worker(services, runtime.factory, runtime.spool, DatabaseHealth())
        for _ in range(WARM_UP):
            worker.process(runtime.spool.claim())  # type: ignore[arg-type]
        instrument("on")
        done = len(worker.drain())
        instrument("off")
        runtime.engine.dispose()
    print(f"{done} mails drained; divide callgrind's 'Collected' by {done}", file=sys.stderr)


if __name__ == "__main__":
    main()
