"""Memory over a long run: RSS of ``serve`` and each of its child processes while N mails flow.

Starts ``postdesk serve`` (SQLite, two agents, Maildir outbound) and sends N new-ticket mails
(``bench_smtp.message``: each from its own sender, ~4 KB) over C SMTP connections, keeping at
most ``--backlog`` accepted-but-unstored mails so the run is a steady flow rather than one
burst. Every ``--interval`` seconds it samples the RSS of serve and of every descendant process
(the worker, multiprocessing's resource tracker; with ``--plugins`` also the plugins process,
the three built-in plugins against a loopback shop as in ``bench_pipeline --plugins``). Prints, per process and in total, the RSS once
``--warmup`` of the mails are stored (the baseline, same run) and at the end (all stored and
their three mails each written), the growth in percent (target < 10 %), the peak, and a trace
at every tenth of the run. The ticket count must equal N.

    python bench/bench_soak.py --messages 100000
    python bench/bench_soak.py --messages 20000 --interval 2
    python bench/bench_soak.py --messages 100000 --plugins

The machine may be shared: the load average is printed. RSS does not depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
from bench_pipeline import spawned_pids, write_config
from bench_smtp import free_port, message, wait_for_port
from loopback_plugins import loopback_shop, plugin_config


@dataclass
class Sample:
    """RSS (MiB) of each process at one moment, with how many mails were stored by then."""

    stored: int
    rss: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """Sum over all processes."""
        return sum(self.rss.values())


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (by walking /proc parent ids)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found.extend(frontier)
    return found


def label(pid: int, root: int, plugins: bool) -> str:
    """A stable name for a process: serve, worker, plugins (serve's last spawned process when
    ``plugins`` are on), or the child's module."""
    if pid == root:
        return "serve"
    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    if "spawn_main" in command:
        return "plugins" if plugins and pid == spawned_pids(root)[-1] else f"worker {pid}"
    if "resource_tracker" in command:
        return "resource tracker"
    return f"child {pid}"


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    """Samples RSS of serve and its descendants every ``interval`` seconds."""

    def __init__(self, serve: int, database: Path, interval: float, plugins: bool) -> None:
        super().__init__(daemon=True)
        self.serve, self.database, self.interval = serve, database, interval
        self.plugins = plugins
        self.samples: list[Sample] = []
        self.stop = threading.Event()

    def take(self) -> Sample:
        """One sample now."""
        sample = Sample(stored_count(self.database))
        for pid in descendants(self.serve):
            try:
                sample.rss[label(pid, self.serve, self.plugins)] = rss_mib(pid)
            except OSError:  # the process ended between listing and reading
                continue
        self.samples.append(sample)
        return sample

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.take()


STORED = "SELECT count(*) FROM messages WHERE direction = 'in'"


def stored_count(database: Path) -> int:
    """Inbound messages stored so far (0 before the schema exists)."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
            return int(connection.execute(STORED).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


async def send_all(port: int, args: argparse.Namespace, database: Path) -> None:
    """Send every mail over ``connections`` sessions, pausing while the backlog is full."""
    numbers = iter(range(args.messages))
    sent = 0

    async def session() -> None:
        nonlocal sent
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120)
        await client.connect()
        for number in numbers:
            if number % 100 == 0 and sent - stored_count(database) > args.backlog:
                await client.quit()  # serve closes sessions idle for smtp.idle_timeout
                while sent - stored_count(database) > args.backlog:
                    await asyncio.sleep(0.5)
                await client.connect()
            sender = f"customer{number}@example.org"  # distinct senders (flood cap, R-42)
            await client.sendmail(sender, ["support@example.com"], message(number, args.size))
            sent += 1
        await client.quit()

    await asyncio.gather(*(session() for _ in range(args.connections)))


def outbox_files(workdir: Path) -> int:
    """Mails written to the outbox Maildir so far."""
    folder = workdir / "data" / "outbox-sent" / "new"
    return sum(1 for _ in os.scandir(folder)) if folder.is_dir() else 0


def soak(
    args: argparse.Namespace, workdir: Path, extra: str = ""
) -> tuple[list[Sample], float, int]:
    """Run serve under the flow, ``extra`` added to its configuration; the samples, the
    seconds it took and the tickets stored."""
    port = free_port()
    config = write_config(workdir, port, extra)
    database = workdir / "data" / "postdesk.db"
    serve = subprocess.Popen(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "serve"],
        stdout=(workdir / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    sampler = Sampler(serve.pid, database, args.interval, bool(extra))
    try:
        wait_for_port(port)
        started = time.time()
        sampler.take()
        sampler.start()
        asyncio.run(send_all(port, args, database))
        deadline = time.time() + 3600
        while stored_count(database) < args.messages or outbox_files(workdir) < 3 * args.messages:
            if time.time() > deadline or serve.poll() is not None:
                raise SystemExit(f"serve did not finish the mails; see {workdir / 'serve.log'}")
            time.sleep(1)
        elapsed = time.time() - started
        time.sleep(args.interval)  # one more quiet sample
        sampler.stop.set()
        sampler.join()
        sampler.take()
        with sqlite3.connect(database) as connection:
            tickets = int(connection.execute("SELECT count(*) FROM tickets").fetchone()[0])
    finally:
        sampler.stop.set()
        serve.terminate()
        serve.wait(60)
    return sampler.samples, elapsed, tickets


def report(args: argparse.Namespace, samples: list[Sample], elapsed: float, tickets: int) -> int:
    """Print warm-up against end RSS per process; 0 when growth and counts are in bounds."""
    threshold = args.warmup * args.messages
    warm = next(s for s in samples if s.stored >= threshold)
    end = samples[-1]
    print(
        f"{args.messages} mails in {elapsed:.0f} s ({args.messages / elapsed:.1f} msg/s),"
        f" {tickets} tickets stored, {len(samples)} RSS samples every {args.interval:g} s,"
        f" load average now {os.getloadavg()[0]:.1f}"
    )
    print(f"RSS (MiB) after {warm.stored} stored (warm-up) and at the end:")
    for name in sorted(set(warm.rss) | set(end.rss)):
        before, after = warm.rss.get(name, 0.0), end.rss.get(name, 0.0)
        peak = max(s.rss.get(name, 0.0) for s in samples)
        growth = f"{(after - before) / before * 100:+6.1f} %" if before else "   new"
        print(f"  {name:<18} {before:7.1f} -> {after:7.1f}  {growth}  (peak {peak:.1f})")
    growth = (end.total - warm.total) / warm.total * 100
    print(
        f"  {'total':<18} {warm.total:7.1f} -> {end.total:7.1f}  {growth:+6.1f} %"
        f"  (peak {max(s.total for s in samples):.1f}); target < 10 %"
    )
    trace = []
    for tenth in range(1, 11):
        point = next((s for s in samples if s.stored >= tenth * args.messages / 10), end)
        trace.append(f"{tenth * 10}%:{point.total:.0f}")
    print(f"  total RSS by share of mails stored: {' '.join(trace)}")
    return 0 if tickets == args.messages and growth < 10 else 1


def main() -> int:
    """Parse the options, run the soak and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--size", type=int, default=4000, help="approximate body bytes")
    parser.add_argument("--backlog", type=int, default=2000, help="most mails accepted, unstored")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=0.1, help="share of mails before baseline")
    parser.add_argument("--keep", action="store_true", help="keep the data folder and log")
    parser.add_argument(
        "--plugins",
        action="store_true",
        help="enable the three built-in plugins against a loopback shop and webhook receiver",
    )
    parser.add_argument(
        "--shop-delay", type=float, default=0.05, help="seconds the loopback shop takes to answer"
    )
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}, load average at start {os.getloadavg()[0]:.1f} (shared)")
    folder = tempfile.mkdtemp(prefix="bench-soak-")
    try:
        if args.plugins:
            with loopback_shop(args.shop_delay) as (http_port, _pid):
                samples, elapsed, tickets = soak(
                    args, Path(folder), plugin_config(http_port, "all")
                )
        else:
            samples, elapsed, tickets = soak(args, Path(folder))
    finally:
        if args.keep:
            print(f"files kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return report(args, samples, elapsed, tickets)


if __name__ == "__main__":
    sys.exit(main())
