"""The outbox tail: the sender draining a backlog of committed outbox rows into the Maildir.

After a burst the worker is done and the outbox still holds the mails of the last tickets; this
is that part alone. N rows (``--mails``, ~4.5 KB each, as a new ticket's acknowledgement and
notifications are) are queued on SQLite, then ``OutboxSender.drain_once`` writes them into
``<data_dir>/outbox-sent/new/``. Prints wall time, the process's user and system CPU per mail,
and the share of wall time spent in the Maildir writes (while any group is being written) versus
the database (claim, finish; ``BENCH_TMP`` picks the file system of the data dir).
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

from bench_pipeline import queue_backlog, write_config
from bench_smtp import free_port, message


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


def main() -> None:
    """Alternate this checkout and the baseline (if given); per-run lines, then medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=3000)
    parser.add_argument("--size", type=int, default=4000, help="approximate body bytes")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline-pythonpath", default="")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
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
            output = subprocess.run(
                [*command, "--size", str(args.size)], env=env, check=True, capture_output=True
            ).stdout
            result = json.loads(output.splitlines()[-1])
            runs[name].append(result)
            print(f"round {number} {name:13s}: {_line(result)}")
    for name, results in runs.items():
        median = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(f"median {name:13s}: {_line(median)}")


def _line(result: dict[str, float]) -> str:
    return (
        f"{result['wall_s']:5.2f} s ({result['rate']:6.0f} mails/s), CPU user"
        f" {result['user_ms']:.3f} + sys {result['sys_ms']:.3f} ms/mail, Maildir"
        f" {result['maildir_share'] * 100:.0f}%, claim {result['claim_share'] * 100:.0f}%, finish"
        f" {result['finish_share'] * 100:.0f}% of wall"
    )


if __name__ == "__main__":
    main()
