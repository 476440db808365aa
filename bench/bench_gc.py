"""Garbage collection in serve's long-running processes, with and without ``settle_heap``
(``gc.freeze`` once set up), side by side.

Each run is a fresh process that opens a runtime on SQLite and does one of two jobs:
``worker`` spools N new-ticket mails (two agents: an acknowledgement and two notifications
each), warms the worker up and drains the rest; ``lookups`` asks the built-in CRM and
``orders_http`` (against a loopback shop answering after 50 ms, bench_plugins' server) for the
contact and orders of N senders, 200 at a time, as the plugins process answers the workers.
Settled runs call ``settle_heap`` once warm, as serve's processes do. Printed: CPU per message,
time in the collector per message (``gc.callbacks``), full collections; ``--rounds``
interleaves plain and settled runs (medians)::

    python bench/bench_gc.py --messages 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_pipeline import write_config
from bench_plugins import SERVERS, plugin_config
from bench_smtp import free_port, message

from postdesk.daemon.config import load_settings
from postdesk.daemon.intake.spool import Envelope
from postdesk.daemon.runtime import open_runtime, settle_heap
from postdesk.daemon.worker import DatabaseHealth, Worker
from postdesk.plugins.runner import PluginRunner

WARM_UP = 20  # mails processed before measuring: imports, caches, compiled statements
WAVE = 200  # lookups in flight at once
SHOP_DELAY = 0.05  # seconds the loopback shop takes to answer


class Collector:
    """Time spent in the garbage collector, and the full collections, since made."""

    def __init__(self) -> None:
        """Start listening to the collector."""
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0
        gc.callbacks.append(self._heard)

    def _heard(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.full += info["generation"] == 2


def worker_run(count: int, settle: bool) -> dict[str, float]:
    """Drain ``count`` mails in this process; the figures per message."""
    with tempfile.TemporaryDirectory() as workdir:
        config = write_config(Path(workdir), free_port())
        runtime = open_runtime(load_settings(str(config), environ={}))
        for number in range(count + WARM_UP):
            envelope = Envelope(f"customer{number}@example.org", ("support@example.com",), "b", 0)
            runtime.spool.write(message(number, 4000).replace(b"\n", b"\r\n"), envelope)
        worker = Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth())
        for _ in range(WARM_UP):
            worker.process(runtime.spool.claim())  # type: ignore[arg-type]
        if settle:
            settle_heap()
        tracked = len(gc.get_objects())
        collector = Collector()
        started = time.process_time()
        done = len(worker.drain())
        used = time.process_time() - started
        runtime.engine.dispose()
    return figures(used, collector, tracked, done)


def lookups_run(count: int, settle: bool) -> dict[str, float]:
    """Look up the contacts and orders of ``count`` senders in this process; the figures per
    message."""
    port = free_port()
    shop = subprocess.Popen([sys.executable, "-c", SERVERS, str(port), str(SHOP_DELAY)])
    try:
        with tempfile.TemporaryDirectory() as workdir:
            extra = plugin_config(port, "lookups")
            config = write_config(Path(workdir), free_port(), extra=extra)
            runtime = open_runtime(load_settings(str(config), environ={}))
            plugins = runtime.services.plugins
            time.sleep(0.5)  # the shop is listening
            ask(plugins, range(-WARM_UP, 0))
            if settle:
                settle_heap()
            tracked = len(gc.get_objects())
            collector = Collector()
            started = time.process_time()
            for first in range(0, count, WAVE):
                ask(plugins, range(first, min(first + WAVE, count)))
            used = time.process_time() - started
            plugins.close()
            runtime.engine.dispose()
    finally:
        shop.kill()
    return figures(used, collector, tracked, count)


def ask(plugins: PluginRunner, numbers: range) -> None:
    """The lookups of one sender each, mentioning an order, all at once; wait for them."""
    asked = [
        plugins.lookup(f"customer{n}@example.org", f"Where is my order A{n + 10**6}?")
        for n in numbers
    ]
    concurrent.futures.wait([future for future in asked if future is not None])


def figures(used: float, collector: Collector, tracked: int, done: int) -> dict[str, float]:
    """A run's figures per message."""
    return {
        "cpu_ms": used * 1000 / done,
        "gc_ms": collector.seconds * 1000 / done,
        "full": collector.full,
        "tracked": tracked,
    }


JOBS = {"worker": worker_run, "lookups": lookups_run}


def main() -> None:
    """Interleave runs without and with a settled heap; print the medians and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("JOB", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        job, kind = args.one
        print(json.dumps(JOBS[job](args.messages, kind == "settled")))
        return
    print(f"messages: {args.messages} per run, rounds {args.rounds} (medians)")
    for job in JOBS:
        results: dict[str, list[dict[str, float]]] = {"plain": [], "settled": []}
        for _ in range(args.rounds):
            for kind, runs in results.items():
                command = [sys.executable, __file__, "--messages", str(args.messages)]
                command += ["--one", job, kind]
                output = subprocess.run(command, check=True, capture_output=True, text=True)
                runs.append(json.loads(output.stdout.splitlines()[-1]))
        medians = {
            kind: {name: statistics.median(run[name] for run in runs) for name in runs[0]}
            for kind, runs in results.items()
        }
        for kind, median in medians.items():
            print(
                f"{job:8} {kind:8} CPU {median['cpu_ms']:.3f} ms/msg, in the collector "
                f"{median['gc_ms']:.3f} ms/msg, full collections {median['full']:.0f}, "
                f"objects tracked once warm {median['tracked']:.0f}"
            )
        plain, settled = medians["plain"], medians["settled"]
        print(
            f"{job:8} settled/plain: CPU x{settled['cpu_ms'] / plain['cpu_ms']:.3f}, "
            f"collector x{settled['gc_ms'] / max(plain['gc_ms'], 1e-9):.3f}"
        )


if __name__ == "__main__":
    main()
