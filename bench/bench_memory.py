"""R-36 memory benchmark: peak RSS of ``serve`` and of its worker for one large message.

Starts ``postdesk serve`` on SQLite (or ``--database URL``), sends one small message first (the
worker imports what processing needs on its first message: not the large message's cost),
measures both processes' idle RSS (the baseline, in the same run), resets their kernel peak
(``/proc/<pid>/clear_refs``), then sends one message of about ``--megabytes`` MB with 20
attachments and waits until it is stored. Each process's peak is the kernel's high-water mark
(``VmHWM``, exact however short the peak), or the highest RSS sampled every 20 ms where the
mark cannot be reset; printed above idle and as a multiple of the message size (target: under
2x in each process).

    python bench/bench_memory.py --megabytes 25
    python bench/bench_memory.py --database postgresql+psycopg://postgres@127.0.0.1/empty_db
"""

from __future__ import annotations

import argparse
import email.policy
import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import Engine, create_engine, text


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def big_message(megabytes: float) -> bytes:
    """A mail with 20 binary attachments adding up to about ``megabytes`` MB on the wire."""
    mail = EmailMessage()
    mail["From"] = "carol@example.org"
    mail["To"] = "support@example.com"
    mail["Subject"] = "Twenty large attachments"
    mail["Message-ID"] = "<bench-memory@example.org>"
    mail.set_content("See the attached files.\n")
    part_bytes = int(megabytes * 1_000_000 * 0.74 / 20)  # base64 grows by a third
    for n in range(20):
        mail.add_attachment(
            os.urandom(part_bytes),
            maintype="application",
            subtype="octet-stream",
            filename=f"file{n}.bin",
        )
    return mail.as_bytes(policy=email.policy.SMTP)  # CRLF line ends, as on the wire


def small_message() -> bytes:
    """The warm-up mail, from another customer."""
    mail = EmailMessage()
    mail["From"] = "dave@example.org"
    mail["To"] = "support@example.com"
    mail["Subject"] = "Warm-up"
    mail.set_content("A small message first.\n")
    return mail.as_bytes(policy=email.policy.SMTP)


def send(port: int, raw: bytes, sender: str) -> None:
    """Send ``raw`` from ``sender`` to the helpdesk over SMTP."""
    with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
        client.sendmail(sender, ["support@example.com"], raw)


def wait_stored(engine: Engine, count: int) -> None:
    """Wait until ``count`` inbound messages are stored."""
    query = text("SELECT count(*) FROM messages WHERE direction = 'in'")
    while True:
        with engine.connect() as connection:
            if connection.execute(query).scalar_one() >= count:
                return
        time.sleep(0.2)


def status(pid: int, field: str) -> int:
    """A size from ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``) in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 once it is gone)."""
    return status(pid, "VmRSS")


def reset_peak(pid: int) -> bool:
    """Reset the kernel's peak RSS (``VmHWM``) of ``pid`` to its current RSS; False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def worker_pid(serve: int) -> int:
    """The worker process started by ``serve``."""
    for _ in range(200):
        for child in Path(f"/proc/{serve}/task/{serve}/children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
        time.sleep(0.1)
    raise SystemExit("no worker process found")


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=25.0)
    parser.add_argument(
        "--database", help="URL of an empty database to use (default: SQLite in a temp dir)"
    )
    args = parser.parse_args()
    raw = big_message(args.megabytes)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        port = free_port()
        database = args.database or f"sqlite:///{root / 'postdesk.db'}"
        config = root / "postdesk.toml"
        config.write_text(
            f'[helpdesk]\naddress = "support@example.com"\ndatabase = "{database}"\n'
            f'data_dir = "{root / "data"}"\nsecret = "bench"\n'
            f'[smtp]\nlisten = "127.0.0.1:{port}"\nmax_message_bytes = {len(raw) * 2}\n'
        )
        command = [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "serve"]
        log = (root / "serve.log").open("wb")
        serve = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            worker = worker_pid(serve.pid)
            engine = create_engine(database)
            send(port, small_message(), "dave@example.org")
            wait_stored(engine, 1)
            time.sleep(3)  # let both settle
            pids = {"serve": serve.pid, "worker": worker}
            idle = {name: rss(pid) for name, pid in pids.items()}
            exact = {name: reset_peak(pid) for name, pid in pids.items()}
            peak = dict(idle)
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak["serve"] = max(peak["serve"], rss(serve.pid))
                    peak["worker"] = max(peak["worker"], rss(worker))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            started = time.monotonic()
            send(port, raw, "carol@example.org")
            accepted = time.monotonic() - started
            wait_stored(engine, 2)
            stored = time.monotonic() - started
            time.sleep(0.5)
            done.set()
            sampler.join()
            for name, pid in pids.items():
                if exact[name]:
                    peak[name] = max(peak[name], status(pid, "VmHWM"))
            engine.dispose()
        finally:
            serve.terminate()
            serve.wait(30)
    size = len(raw)
    print(
        f"message: {size / 1e6:.1f} MB with 20 attachments; 250 after {accepted:.1f}s, "
        f"stored after {stored:.1f}s"
    )
    for name in ("serve", "worker"):
        above = peak[name] - idle[name]
        how = "VmHWM" if exact[name] else "sampled"
        print(
            f"{name:>6}: idle {idle[name] / 1e6:.0f} MB, peak {peak[name] / 1e6:.0f} MB ({how}), "
            f"+{above / 1e6:.0f} MB = {above / size:.2f}x the message (target < 2x)"
        )


if __name__ == "__main__":
    main()
