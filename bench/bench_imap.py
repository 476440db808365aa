"""IMAP intake benchmark: backlog throughput and IDLE latency, on SQLite, against a real Dovecot.

Run from the repository root: ``python bench/bench_imap.py [--backlog 5000] [--singles 50]``.
It APPENDs the backlog before starting ``postdesk serve``, measures messages per second from
the daemon's start until every ticket exists, then APPENDs single messages one at a time while
the poller IDLEs and measures APPEND to ticket committed.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.dovecot import Dovecot, require_dovecot
from tests.support import Daemon, make_mail, wait_until, write_config


def main() -> None:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--singles", type=int, default=50)
    args = parser.parse_args()
    require_dovecot()
    dovecot = Dovecot()
    dovecot.start()
    workdir = Path(tempfile.mkdtemp(prefix="postdesk-bench-imap-"))
    config = write_config(
        workdir,
        f"sqlite:///{workdir / 'data' / 'postdesk.db'}",
        extra=dovecot.toml(poll_seconds=600),
    )
    daemon = Daemon(config, workdir)
    try:
        fetch_rate = bare_fetch_rate(dovecot, args.backlog)
        backlog(dovecot, daemon, args.backlog, fetch_rate)
        bare_idle = bare_idle_latency(dovecot, min(args.singles, 20))
        idle_latency(dovecot, daemon, args.backlog, args.singles, bare_idle)
    finally:
        daemon.stop(timeout=60)
        dovecot.cleanup()
    print(f"work dir (daemon log, database): {workdir}")


def bare_fetch_rate(dovecot: Dovecot, count: int) -> float:
    """Baseline: APPEND the backlog, then time a plain client fetching every body (msg/s)."""
    started = time.monotonic()
    mails = [make_mail(subject=f"backlog {i}", body=f"Message {i}\n") for i in range(count)]
    dovecot.append_many(mails, connections=4)
    print(f"appended {count} messages in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    with dovecot.client() as connection:
        connection.select("INBOX", readonly=True)
        for first in range(1, count + 1, 200):
            connection.uid("FETCH", f"{first}:{first + 199}", "(BODY.PEEK[])")
    rate = count / (time.monotonic() - started)
    print(f"baseline: a bare imaplib client fetches the {count} bodies at {rate:.0f} msg/s")
    return rate


def backlog(dovecot: Dovecot, daemon: Daemon, count: int, baseline: float) -> None:
    """Start the daemon on the appended backlog; time until every ticket exists."""
    started = time.monotonic()
    daemon.start()
    wait_until(lambda: _stored(daemon) >= count, timeout=3600, what="the backlog")
    elapsed = time.monotonic() - started
    rate = count / elapsed
    print(
        f"backlog: {count} messages to tickets in {elapsed:.1f} s = {rate:.0f} msg/s "
        f"({rate / baseline:.3f} of the bare fetch rate: processing, not IMAP, is the limit)"
    )


def bare_idle_latency(dovecot: Dovecot, singles: int) -> float:
    """Baseline: median time from APPEND until a bare IDLE-ing client is told (seconds)."""
    latencies = []
    dovecot.append(make_mail(subject="baseline folder"), folder="Baseline")  # not INBOX: unwatched
    with socket.create_connection(("127.0.0.1", dovecot.port), timeout=30) as raw:
        reader = raw.makefile("rb")
        reader.readline()
        raw.sendall(f"a LOGIN {dovecot.user} {dovecot.password}\r\nb SELECT Baseline\r\n".encode())
        while not reader.readline().startswith(b"b OK"):
            pass
        for i in range(singles):
            raw.sendall(b"c IDLE\r\n")
            while not reader.readline().startswith(b"+"):
                pass
            started = time.monotonic()
            dovecot.append(make_mail(subject=f"bare {i}"), folder="Baseline")
            while not reader.readline().rstrip().endswith(b"EXISTS"):
                pass
            latencies.append(time.monotonic() - started)
            raw.sendall(b"DONE\r\n")
            while not reader.readline().startswith(b"c OK"):
                pass
    median = statistics.median(latencies)
    print(f"baseline: a bare IDLE client hears of an APPEND after p50 {median * 1000:.0f} ms")
    return median


def idle_latency(
    dovecot: Dovecot, daemon: Daemon, already: int, singles: int, baseline: float
) -> None:
    """APPEND one message at a time during IDLE; time APPEND to ticket committed."""
    latencies = []
    for i in range(singles):
        started = time.monotonic()
        dovecot.append(make_mail(subject=f"single {i}"))
        wanted = already + i + 1
        wait_until(lambda: _stored(daemon) >= wanted, timeout=60, what="a single")  # noqa: B023
        latencies.append(time.monotonic() - started)
        time.sleep(0.2)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    print(
        f"IDLE latency over {singles} single APPENDs: p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms "
        f"({statistics.median(latencies) / baseline:.2f}x the bare IDLE notice)"
    )


def _stored(daemon: Daemon) -> int:
    return len(daemon.inbound_message_ids())


if __name__ == "__main__":
    main()
