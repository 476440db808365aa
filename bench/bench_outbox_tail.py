"""The outbox tail: the sender draining a backlog of committed outbox rows into the Maildir.

After a burst the worker is done and the outbox still holds the mails of the last tickets; this
is that part alone. N rows (``--mails``, ~4.5 KB each, as a new ticket's acknowledgement and
notifications are) are queued on SQLite, then ``OutboxSender.drain_once`` writes them into
``<data_dir>/outbox-sent/new/``. Prints wall time, the process's user and system CPU per mail,
and the share of wall time spent in the Maildir writes (while any group is being written) versus
the database (claim, finish; ``BENCH_TMP`` picks the file system of the data dir).
``--burst N`` measures the sender keeping pace instead: ``serve``'s sender loop runs while a
stand-in worker commits N batches of ``--per-batch`` mails, holding the write lock ``--hold`` s
for each; prints how long after the last commit the last mail was written, how many mails were
still to write then, and the sender's CPU per mail.
Run it under another checkout's PYTHONPATH to compare (rounds alternate when
``--baseline-pythonpath`` is given):

    python bench/bench_outbox_tail.py --mails 3000 --rounds 4 \
        --baseline-pythonpath /work/wt/base/build/__editable__.postdesk-0.1.0-py3-none-any
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_pipeline import acknowledgements, queue_backlog, write_config
from bench_smtp import free_port, message
from sqlalchemy import select


def one_run(mails: int, size: int) -> dict[str, float]:
    """Queue ``mails`` rows, drain them into the Maildir; wall and CPU figures."""
    from postdesk.daemon.config import load_settings
    from postdesk.daemon.outbound import maildir
    from postdesk.daemon.outbound.sender import OutboxSender
    from postdesk.daemon.runtime import open_runtime

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
        workdir = Path(folder)
        runtime = open_runtime(load_settings(str(write_config(workdir, free_port())), environ={}))
        raws = [message(n, size).replace(b"\n", b"\r\n") for n in range(mails)]
        queue_backlog(runtime, raws)
        os.sync()  # the queued rows' pages are not this drain's to write
        spent = {"maildir": 0.0, "claim": 0.0, "finish": 0.0}
        busy: dict[str, list[float]] = {part: [0, 0.0] for part in spent}  # calls in flight, since
        lock = threading.Lock()

        def timed(part: str, call: Any) -> Any:
            """Wall time while at least one call of ``part`` runs (concurrent calls once)."""

            def wrapper(*args: object) -> object:
                with lock:
                    if not busy[part][0]:
                        busy[part][1] = time.perf_counter()
                    busy[part][0] += 1
                try:
                    return call(*args)
                finally:
                    with lock:
                        busy[part][0] -= 1
                        if not busy[part][0]:
                            spent[part] += time.perf_counter() - busy[part][1]

            return wrapper

        maildir.deliver = timed("maildir", maildir.deliver)  # type: ignore[method-assign]
        sender = OutboxSender(runtime.settings, runtime.factory)
        sender._claim_many = timed("claim", sender._claim_many)  # type: ignore[method-assign]
        sender._finish = timed("finish", sender._finish)  # type: ignore[method-assign]
        before, started = os.times(), time.perf_counter()
        handled = asyncio.run(sender.drain_once())
        wall = time.perf_counter() - started
        after = os.times()
        written = len(os.listdir(workdir / "data" / "outbox-sent" / "new"))
        runtime.engine.dispose()
    if handled != mails or written != mails:
        raise SystemExit(f"handled {handled}, written {written} of {mails}")
    return {
        "wall_s": wall,
        "rate": mails / wall,
        "user_ms": (after.user - before.user) * 1000 / mails,
        "sys_ms": (after.system - before.system) * 1000 / mails,
        "maildir_share": spent["maildir"] / wall,
        "claim_share": spent["claim"] / wall,
        "finish_share": spent["finish"] / wall,
    }


def burst_run(batches: int, per_batch: int, hold: float, size: int) -> dict[str, float]:
    """The sender in ``run`` mode while a stand-in worker commits ``batches`` groups of
    ``per_batch`` mails, each in a write transaction held ``hold`` seconds (as the worker holds
    the SQLite write lock over a batch); after each commit the sender is woken when the checkout's
    ``serve`` does that (``WorkerChannel.committed``). Mail lag and sender CPU per mail."""
    from postdesk.daemon import workerproc
    from postdesk.daemon.config import load_settings
    from postdesk.daemon.outbound.outbox import _record
    from postdesk.daemon.outbound.sender import OutboxSender
    from postdesk.daemon.runtime import open_runtime
    from postdesk.models.schema import Ticket, utcnow

    nudges = hasattr(workerproc.WorkerChannel, "committed")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
        workdir = Path(folder)
        runtime = open_runtime(load_settings(str(write_config(workdir, free_port())), environ={}))
        new = workdir / "data" / "outbox-sent" / "new"
        raws = [message(n, size).replace(b"\n", b"\r\n") for n in range(per_batch)]
        with runtime.factory() as session, session.begin():
            session.add(Ticket(number=1, subject="bench", requester="customer@example.org"))
        sender = OutboxSender(runtime.settings, runtime.factory)
        total = batches * per_batch
        marks: dict[str, float] = {}

        def produce(loop: asyncio.AbstractEventLoop) -> None:
            started = time.thread_time()
            for batch in range(batches):
                with runtime.factory() as session, session.begin():
                    ticket = session.scalars(select(Ticket)).one()  # takes the write lock
                    time.sleep(hold)
                    now = utcnow()
                    outs = acknowledgements(raws, f"{batch}-", now)
                    _record(session, runtime.settings, ticket, outs, now)
                if nudges:
                    loop.call_soon_threadsafe(sender.wake)
                time.sleep(0.005)  # the worker settles its spool files
            marks["committed"] = time.time()
            marks["written_then"] = len(os.listdir(new)) if new.is_dir() else 0
            marks["producer_cpu"] = time.thread_time() - started

        async def scenario() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(sender.run(stop))
            await asyncio.to_thread(produce, asyncio.get_running_loop())
            while not new.is_dir() or len(os.listdir(new)) < total:
                await asyncio.sleep(0.01)
            stop.set()
            await task

        before = os.times()
        asyncio.run(scenario())
        after = os.times()
        last = max(entry.stat().st_mtime for entry in os.scandir(new))
        runtime.engine.dispose()
    cpu = after.user - before.user + after.system - before.system - marks["producer_cpu"]
    return {
        "lag_s": last - marks["committed"],
        "backlog": total - marks["written_then"],
        "sender_cpu_ms": cpu * 1000 / total,
        "sys_ms": (after.system - before.system) * 1000 / total,
    }


def main() -> None:
    """Alternate this checkout and the baseline (if given); per-run lines, then medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=3000)
    parser.add_argument("--size", type=int, default=4000, help="approximate body bytes")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline-pythonpath", default="")
    parser.add_argument(
        "--burst",
        type=int,
        default=0,
        help="instead: N batches of --per-batch mails committed every --hold s while it runs",
    )
    parser.add_argument("--per-batch", type=int, default=120)
    parser.add_argument("--hold", type=float, default=0.2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.burst:
            print(json.dumps(burst_run(args.burst, args.per_batch, args.hold, args.size)))
        else:
            print(json.dumps(one_run(args.mails, args.size)))
        return
    paths = {"this checkout": ""}
    if args.baseline_pythonpath:
        paths["baseline"] = args.baseline_pythonpath
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    print(f"cpus {os.cpu_count()}, load average at start {os.getloadavg()[0]:.1f}")
    for number in range(args.rounds):
        order = list(paths) if number % 2 == 0 else list(reversed(paths))
        for name in order:
            env = {**os.environ, "PYTHONPATH": paths[name]} if paths[name] else None
            command = [sys.executable, __file__, "--child", "--mails", str(args.mails)]
            command += ["--burst", str(args.burst), "--per-batch", str(args.per_batch)]
            output = subprocess.run(
                [*command, "--size", str(args.size), "--hold", str(args.hold)],
                env=env,
                check=True,
                capture_output=True,
            ).stdout
            result = json.loads(output.splitlines()[-1])
            runs[name].append(result)
            print(f"round {number} {name:13s}: {_line(result)}")
    for name, results in runs.items():
        median = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(f"median {name:13s}: {_line(median)}")


def _line(result: dict[str, float]) -> str:
    if "lag_s" in result:
        return (
            f"last mail {result['lag_s']:5.2f} s after the last commit, {result['backlog']:5.0f}"
            f" mails behind then; sender CPU {result['sender_cpu_ms']:.3f} ms/mail"
            f" (sys {result['sys_ms']:.3f})"
        )
    return (
        f"{result['wall_s']:5.2f} s ({result['rate']:6.0f} mails/s), CPU user"
        f" {result['user_ms']:.3f} + sys {result['sys_ms']:.3f} ms/mail, Maildir"
        f" {result['maildir_share'] * 100:.0f}%, claim {result['claim_share'] * 100:.0f}%, finish"
        f" {result['finish_share'] * 100:.0f}% of wall"
    )


if __name__ == "__main__":
    main()
