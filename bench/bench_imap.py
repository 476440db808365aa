"""IMAP intake benchmark: backlog throughput and IDLE latency, on SQLite, against a real Dovecot.

Run from the repository root: ``python bench/bench_imap.py [--backlog 5000] [--singles 50]``.
It APPENDs the backlog before starting ``postdesk serve``, measures messages per second from
the daemon's start until every ticket exists, then APPENDs single messages one at a time while
the poller IDLEs and measures APPEND to ticket committed.
"""

from __future__ import annotations

import argparse
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
        backlog(dovecot, daemon, args.backlog)
        idle_latency(dovecot, daemon, args.backlog, args.singles)
    finally:
        daemon.stop(timeout=60)
        dovecot.cleanup()
    print(f"work dir (daemon log, database): {workdir}")


def backlog(dovecot: Dovecot, daemon: Daemon, count: int) -> None:
    """APPEND ``count`` messages, start the daemon, time until every ticket exists."""
    started = time.monotonic()
    mails = [make_mail(subject=f"backlog {i}", body=f"Message {i}\n") for i in range(count)]
    dovecot.append_many(mails, connections=4)
    print(f"appended {count} messages in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    daemon.start()
    wait_until(lambda: _stored(daemon) >= count, timeout=3600, what="the backlog")
    elapsed = time.monotonic() - started
    print(f"backlog: {count} messages to tickets in {elapsed:.1f} s = {count / elapsed:.0f} msg/s")


def idle_latency(dovecot: Dovecot, daemon: Daemon, already: int, singles: int) -> None:
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
        f"p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"
    )


def _stored(daemon: Daemon) -> int:
    return len(daemon.inbound_message_ids())


if __name__ == "__main__":
    main()
