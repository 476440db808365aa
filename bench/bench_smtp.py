"""SMTP intake benchmark: postdesk's full pipeline against a bare aiosmtpd server, in one run.

Sends N messages over C concurrent connections to (a) a bare aiosmtpd server that accepts and
discards, and (b) ``postdesk serve`` on SQLite with the full pipeline and Maildir outbound. Prints
messages per second for both and their ratio, DATA->250 latency (p50/p99), 250->ticket committed
latency (p50/p99), and the daemon's RSS over the run (peak, and early versus late to show it flat).

    python bench/bench_smtp.py --messages 2000 --connections 8
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
from sqlalchemy import create_engine, text

BARE_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from aiosmtpd.smtp import SMTP

    class Discard:
        async def handle_DATA(self, server, session, envelope):
            return "250 2.0.0 Ok"

    async def main():
        loop = asyncio.get_running_loop()
        await loop.create_server(lambda: SMTP(Discard()), "127.0.0.1", int(sys.argv[1]))
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


_SCRATCH: list[str] = []


@contextlib.contextmanager
def scratch_dir() -> Iterator[str]:
    """A fresh folder for one run, removed when the bench exits, not when the run ends.

    Removing a run's thousands of files just before the next run would slow that run's file
    creation on ext4 without a journal (this project's machines): the inode allocator skips
    every inode freed in the last half minute, one buffer lookup each (``perf``: 46% of serve's
    CPU in ``find_inode_bit`` and ``recently_deleted`` in the run after a removal).
    """
    if not _SCRATCH:
        _SCRATCH.append(tempfile.mkdtemp(prefix="postdesk-bench-"))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    yield tempfile.mkdtemp(dir=_SCRATCH[0])


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def message(number: int, size: int) -> bytes:
    """A customer mail of roughly ``size`` bytes with a unique Message-ID, from its own sender
    (each is a new ticket: one sender's flood of new tickets would be capped, R-42)."""
    mail = EmailMessage()
    mail["From"] = f"customer{number}@example.org"
    mail["To"] = "support@example.com"
    mail["Subject"] = f"Order {number} has not arrived"
    mail["Message-ID"] = f"<bench-{number}@example.org>"
    line = "My order has not arrived yet, could you please check where it is? "
    mail.set_content(line * max(1, size // len(line)))
    return mail.as_bytes()


async def blast(
    port: int, total: int, connections: int, size: int
) -> tuple[float, dict[str, float], list[float]]:
    """Send ``total`` messages over ``connections`` sessions; returns wall time, 250 times, latencies."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(total):
        queue.put_nowait(number)
    accepted: dict[str, float] = {}
    latencies: list[float] = []

    async def session() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
        await client.connect()
        while not queue.empty():
            number = queue.get_nowait()
            raw = message(number, size)
            started = time.perf_counter()
            await client.sendmail("customer@example.org", ["support@example.com"], raw)
            latencies.append(time.perf_counter() - started)
            accepted[f"<bench-{number}@example.org>"] = time.time()
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(connections)))
    return time.perf_counter() - started, accepted, latencies


def wait_for_port(port: int) -> None:
    """Block until something listens on ``port``."""
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


class RssSampler(threading.Thread):
    """Samples the resident set size of a process and its children (the worker) every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.running = pid, [], True

    def run(self) -> None:
        while self.running:
            try:
                children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
                kb = sum(_rss_kb(pid) for pid in [str(self.pid), *children])
            except FileNotFoundError:
                return
            self.samples.append(kb / 1024)
            time.sleep(0.2)


def _rss_kb(pid: str) -> int:
    """Resident set size of one process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1000


def run_bare(args: argparse.Namespace) -> tuple[float, list[float]]:
    """Baseline: aiosmtpd that accepts and discards, in its own process."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port)])
    try:
        wait_for_port(port)
        wall, _accepted, latencies = asyncio.run(
            blast(port, args.messages, args.connections, args.size)
        )
    finally:
        server.terminate()
        server.wait()
    return args.messages / wall, latencies


def run_postdesk(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    """postdesk serve on SQLite: intake rate, latencies, commit lag and memory."""
    port = free_port()
    config = workdir / "postdesk.toml"
    config.write_text(
        f'[helpdesk]\naddress = "support@example.com"\ntag = "Bench"\ndata_dir = "{workdir / "data"}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{port}"\n'
        "[outbound]\nauto_per_recipient_10min = 1000000\nauto_per_recipient_day = 1000000\nauto_total_per_hour = 1000000\n"
    )
    log = (workdir / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    sampler = RssSampler(daemon.pid)
    try:
        wait_for_port(port)
        sampler.start()
        wall, accepted, latencies = asyncio.run(
            blast(port, args.messages, args.connections, args.size)
        )
        engine = create_engine(f"sqlite:///{workdir / 'data' / 'postdesk.db'}")
        committed = wait_all_committed(engine, len(accepted))
        drain = time.time()
    finally:
        sampler.running = False
        daemon.terminate()
        daemon.wait(60)
    lags = [committed[mid] - accepted[mid] for mid in accepted if mid in committed]
    quarter = max(1, len(sampler.samples) // 4)
    return {
        "rate": args.messages / wall,
        "latencies": latencies,
        "lags": lags,
        "drain_rate": len(committed) / (drain - min(accepted.values())),
        "rss_peak": max(sampler.samples),
        "rss_early": statistics.mean(sampler.samples[:quarter]),
        "rss_late": statistics.mean(sampler.samples[-quarter:]),
    }


def wait_all_committed(engine: object, expected: int) -> dict[str, float]:
    """Poll until every message is stored; returns Message-ID -> commit time (epoch seconds)."""
    query = text("SELECT message_id, created_at FROM messages WHERE direction = 'in'")
    deadline = time.time() + 1800
    while time.time() < deadline:
        with engine.connect() as connection:  # type: ignore[attr-defined]
            rows = connection.execute(query).all()
        if len(rows) >= expected:
            return {mid: _epoch(created) for mid, created in rows}
        time.sleep(0.5)
    raise SystemExit("the daemon did not store every message within 30 minutes")


def _epoch(value: str) -> float:
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(str(value))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def main() -> None:
    """Run both servers and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--size", type=int, default=4000, help="approximate body bytes")
    args = parser.parse_args()
    bare_rate, bare_latencies = run_bare(args)
    with scratch_dir() as workdir:
        result = run_postdesk(args, Path(workdir))
    rate = float(result["rate"])  # type: ignore[arg-type]
    print(
        f"messages: {args.messages} x ~{args.size} B over {args.connections} connections, cpus {os.cpu_count()}"
    )
    print(
        f"bare aiosmtpd      : {bare_rate:8.1f} msg/s  DATA->250 p50 {pct(bare_latencies, 50):6.1f} ms  p99 {pct(bare_latencies, 99):6.1f} ms"
    )
    print(
        f"postdesk (SQLite)  : {rate:8.1f} msg/s  DATA->250 p50 {pct(result['latencies'], 50):6.1f} ms  p99 {pct(result['latencies'], 99):6.1f} ms"
    )  # type: ignore[arg-type]
    print(f"ratio postdesk/bare: {rate / bare_rate:8.2f}")
    print(
        f"250 -> ticket committed: p50 {pct(result['lags'], 50):8.1f} ms  p99 {pct(result['lags'], 99):8.1f} ms"
    )  # type: ignore[arg-type]
    print(f"pipeline drain rate: {result['drain_rate']:8.1f} msg/s (first 250 to last commit)")
    print(
        f"daemon RSS: peak {result['rss_peak']:.1f} MiB, first quarter {result['rss_early']:.1f} MiB, last quarter {result['rss_late']:.1f} MiB"
    )


if __name__ == "__main__":
    main()
