"""Plugin benchmark: throughput with the three built-in plugins on and a 50 ms shop, in one run.

Runs ``postdesk serve`` on SQLite with the same load (bench_smtp's harness) and one agent, so
every new ticket writes an agent notification: without plugins, then with each plugin set of
``--variants``: ``all`` is ``postdesk.plugins.crm``, ``postdesk.plugins.orders_http`` against a
loopback shop answering every request after 50 ms, and ``postdesk.plugins.notify_webhook``
posting to a loopback receiver; ``lookups``, ``webhook`` and ``webhook-idle`` (enabled, no
event to send) help find a cost. One message warms the worker up before the load is timed.
``--rounds`` interleaves repeated runs (medians). Prints intake and drain rates, the loss in
percent, and the CPU each process used per message: its main thread (the worker's is the
pipeline, serve's the SMTP loop) and its other threads (plugins, database threads), and
all of them together with and without plugins. On a shared machine the CPU figures are
steadier than the rates, and each round's pair of rates (run back to back) steadier than the
medians of all rounds: both are printed. ``--baseline-pythonpath`` runs another checkout's
runs interleaved with this one's and prints both losses (compare the losses, not the rates).

    python bench/bench_plugins.py --messages 300 --variants all,lookups,webhook --rounds 3
    python bench/bench_plugins.py --messages 3000 --rounds 5 --baseline-pythonpath ../old
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
from bench_pipeline import bytecode_env
from bench_smtp import blast, free_port, message, scratch_dir, wait_all_committed, wait_for_port
from loopback_plugins import VARIANTS, loopback_shop, plugin_config
from sqlalchemy import Engine, create_engine, text


def cpu_seconds(root: int) -> dict[str, float]:
    """CPU seconds so far of ``root`` and its descendants: each process's main thread, and
    its other threads together (the plugin loop, database threads...); and how much of each
    process's CPU went to the kernel (system calls, thread switches)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    family, found = [root], [root]
    while found:
        found = [pid for pid, parent in parents.items() if parent in found]
        family += found
    ticks = os.sysconf("SC_CLK_TCK")
    seconds: dict[str, float] = {}
    for index, pid in enumerate(family):
        name = "serve" if index == 0 else f"child{index}"
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                used = (int(fields[11]) + int(fields[12])) / ticks
                part = f"{name} {'main' if task.name == str(pid) else 'threads'}"
                seconds[part] = seconds.get(part, 0.0) + used
                system = f"{name} in the kernel"  # of its threads together
                seconds[system] = seconds.get(system, 0.0) + int(fields[12]) / ticks
    return seconds


async def warm_up(port: int, number: int, size: int) -> str:
    """Send one message (so the worker process is up and warm); return its Message-ID."""
    await aiosmtplib.send(
        message(number, size),
        sender="warmup@example.org",
        recipients=["support@example.com"],
        hostname="127.0.0.1",
        port=port,
        timeout=60,
    )
    return f"<bench-{number}@example.org>"


def wait_released(engine: Engine, timeout: float = 30.0) -> int:
    """Wait until no agent notification is held for its lookups' facts (outbox rows due
    later); return how many were held when the messages were all stored."""
    query = text(
        "SELECT count(*) FROM outbox"
        " WHERE status = 'pending' AND attempts = 0 AND next_attempt_at > :now"
    )
    deadline = time.monotonic() + timeout
    first = None
    while True:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")  # as SQLite stores it
        with engine.connect() as connection:
            held = connection.execute(query, {"now": now}).scalar_one()
        first = held if first is None else first
        if not held or time.monotonic() > deadline:
            return first
        time.sleep(0.1)


# An agent notification queued held is due later than it was written until it is released.
HELD_LATE = text(
    "SELECT count(*) FROM outbox WHERE recipient = 'agent@example.com'"
    " AND next_attempt_at != created_at"
)


def run(
    args: argparse.Namespace,
    workdir: Path,
    extra: str,
    servers: int,
    env: dict[str, str] | None = None,
) -> tuple[float, float, float]:
    """One daemon run (its environment ``env``: another checkout's, say): (intake msg/s,
    drain msg/s from first 250 to last commit, CPU ms per message of serve and its processes
    together)."""
    port = free_port()
    workdir.mkdir(parents=True)
    config = workdir / "postdesk.toml"
    config.write_text(
        f'[helpdesk]\naddress = "support@example.com"\ntag = "Bench"\ndata_dir = "{workdir / "data"}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{port}"\n'
        "[outbound]\nauto_per_recipient_10min = 1000000\nauto_per_recipient_day = 1000000\nauto_total_per_hour = 1000000\n"
        '[[agents]]\nemail = "agent@example.com"\nname = "Agent"\n' + extra
    )
    with (workdir / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_for_port(port)
        engine = create_engine(f"sqlite:///{workdir / 'data' / 'postdesk.db'}")
        # One message first, so that the worker process is up, as it is long before mail arrives.
        warm = asyncio.run(warm_up(port, args.messages, args.size))
        wait_all_committed(engine, 1)
        before, stubs_before = cpu_seconds(daemon.pid), cpu_seconds(servers)
        wall, accepted, _latencies = asyncio.run(
            blast(port, args.messages, args.connections, args.size)
        )
        committed = wait_all_committed(engine, len(accepted) + 1)
        used, stubs = cpu_seconds(daemon.pid), cpu_seconds(servers)
        committed.pop(warm)
        held = wait_released(engine)
        with engine.connect() as connection:
            facts = connection.execute(
                text("SELECT count(*) FROM messages WHERE text LIKE '%Order:     %'")
            ).scalar_one()
            late = connection.execute(HELD_LATE).scalar_one()  # composed twice: see held.py
        print(
            f"  notifications carrying order facts: {facts}, held for them and completed later:"
            f" {late} (held when drained: {held})"
        )
        costs = ", ".join(
            f"{part} {(used[part] - before.get(part, 0.0)) * 1000 / args.messages:.2f}"
            for part in sorted(used)
        )
        print(f"  CPU ms per message: {costs}")
        total = sum(  # the kernel's share is counted in each process's threads already
            seconds - before.get(part, 0.0)
            for part, seconds in used.items()
            if not part.endswith("in the kernel")
        )
        stub = sum(
            seconds - stubs_before.get(part, 0.0)
            for part, seconds in stubs.items()
            if not part.endswith("in the kernel")  # counted in its threads already
        )
        print(
            f"  CPU ms per message of the loopback shop and receiver: {stub * 1000 / args.messages:.1f}"
        )
    finally:
        daemon.terminate()
        daemon.wait(60)
    drain = max(committed.values()) - min(accepted.values())
    rates = args.messages / wall, len(committed) / drain
    print(f"  intake {rates[0]:.1f} msg/s, drain {rates[1]:.1f} msg/s")
    return (*rates, total * 1000 / args.messages)


def main() -> None:
    """Run without and with plugins and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--size", type=int, default=4000, help="approximate body bytes")
    parser.add_argument("--shop-delay", type=float, default=0.05, help="seconds per shop answer")
    parser.add_argument(
        "--variants",
        default="all",
        help=f"comma-separated plugin sets to compare with no plugins: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each variant (median)")
    parser.add_argument(
        "--baseline-pythonpath",
        default="",
        help="a folder holding another checkout's postdesk package: its runs interleave with"
        " this checkout's, and both losses are printed",
    )
    args = parser.parse_args()
    variants = args.variants.split(",")
    baseline = Path(args.baseline_pythonpath)
    if args.baseline_pythonpath and not (baseline / "postdesk" / "daemon" / "cli.py").is_file():
        parser.error(f"--baseline-pythonpath: no postdesk/daemon/cli.py under {baseline}")
    for variant in variants:
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}")
    paths = {"this checkout": ""}
    if args.baseline_pythonpath:
        paths["baseline"] = args.baseline_pythonpath
    cache = tempfile.mkdtemp(prefix="bench-pycache-")
    envs = {name: bytecode_env(path, cache) for name, path in paths.items()}
    rates: dict[str, dict[str, list[tuple[float, float, float]]]] = {name: {} for name in paths}
    with loopback_shop(args.shop_delay) as (http_port, servers), _removed(cache):
        for round_ in range(args.rounds):  # interleaved, so a change in load hits every run
            names = list(paths) if round_ % 2 == 0 else list(reversed(paths))
            for name, variant in ((n, v) for n in names for v in ["none", *variants]):
                with scratch_dir() as base:
                    label = f"{variant} (round {round_ + 1}"
                    label += f", {name})" if len(paths) > 1 else ")"
                    print(f"{label}: {', '.join(VARIANTS.get(variant, ()))}")
                    extra = plugin_config(http_port, variant) if variant != "none" else ""
                    rates[name].setdefault(variant, []).append(
                        run(args, Path(base) / variant, extra, servers, envs[name])
                    )
    print(
        f"messages: {args.messages} over {args.connections} connections, cpus {os.cpu_count()}, "
        f"shop {args.shop_delay * 1000:.0f} ms, rounds {args.rounds} (medians), "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    for name in paths:
        if len(paths) > 1:
            print(f"{name} ({paths[name] or 'as installed'}):")
        _print_losses(rates[name], variants)


@contextlib.contextmanager
def _removed(folder: str) -> Iterator[None]:
    """Remove ``folder`` on exit."""
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _print_losses(rates: dict[str, list[tuple[float, float, float]]], variants: list[str]) -> None:
    """Each variant's intake and drain against no plugins (ratio of the medians, and the median
    of each round's ratio), and its CPU per message."""
    plain = [statistics.median(r[i] for r in rates["none"]) for i in (0, 1, 2)]
    for variant in variants:
        for label, index in (("intake", 0), ("drain", 1)):
            rate = statistics.median(r[index] for r in rates[variant])
            # Each round's pair ran back to back: the median of their ratios shrugs off a
            # machine whose speed drifts between rounds better than the ratio of the medians.
            pairs = zip(rates[variant], rates["none"], strict=True)
            paired = statistics.median(mine[index] / base[index] for mine, base in pairs)
            print(
                f"{variant:<13} {label:<6} {plain[index]:7.1f} msg/s without, {rate:7.1f} msg/s "
                f"with: ratio {rate / plain[index]:.2f}, loss {(1 - rate / plain[index]) * 100:5.1f}%"
                f" (round by round: loss {(1 - paired) * 100:5.1f}%)"
            )
        cpu = statistics.median(r[2] for r in rates[variant])
        print(
            f"{variant:<13} CPU    {plain[2]:7.2f} ms/msg without, {cpu:7.2f} ms/msg with: "
            f"x{cpu / plain[2]:.2f} (serve and its processes; {1 - plain[2] / cpu:.1%} fewer "
            "messages a CPU-second)"
        )


if __name__ == "__main__":
    main()
