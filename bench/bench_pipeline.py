"""Full-pipeline and outbound throughput, each against its bare baseline measured in the same run.

1. Pipeline: N new-ticket mails over C SMTP connections to (a) a bare aiosmtpd server that
   discards, and (b) ``postdesk serve`` on SQLite with two agents (each mail: a ticket, an
   acknowledgement and two agent notifications, written to the outbox Maildir). The postdesk
   rate runs until the last ticket is committed and its three mails are written. Prints both
   rates and their ratio, the worker process's CPU per message and messages per worker-CPU
   second, serve's CPU per message during intake (SMTP and spooling), DATA->250 and
   250->committed latencies, and the RSS of serve + worker. ``--intake-only`` stops at the
   last 250 (intake rate, serve CPU and DATA->250 only); with ``--baseline-pythonpath`` and
   ``--rounds N`` it alternates this checkout and the baseline (ABBA..., a bare run before each
   round) and prints the medians.
2. Steady load (``--steady-seconds``): mails offered at ``--steady-rate`` per second; p50/p99
   of DATA accepted -> ticket committed and of DATA accepted -> agent notification written.
   With ``--plugins`` the same load again with the three built-in plugins: the same latencies,
   and how many agent notifications show the loopback shop's orders.
3. In-process worker (``--in-process N``): the worker alone over N spooled new-ticket mails on
   SQLite, CPU ms and SQL statements per message (run it with ``PYTHONPATH`` pointing at
   another checkout to compare); with ``--postgres URL`` on a fresh PostgreSQL database too,
   with the CPU of its backends per message (``--pg-messages 0`` skips the workers below).
4. Outbound: M queued mails sent by the outbox sender to a bare aiosmtpd relay, against a plain
   smtplib client sending the same bytes to the same relay over one connection.
5. PostgreSQL workers (``--postgres URL``): ``postdesk serve`` with 1, then 2 worker processes
   draining N pre-spooled mails; the 2/1 ratio of the rate from serve's start (start-up
   included) and of the rate from the first stored message, the seconds until it, and the CPU
   per message of each process (workers, PostgreSQL backends, serve) with the commits per
   message: on two cores, two workers are bound by the sum of that CPU. ``--pg-rounds`` repeats
   it in alternating order (and alternates with ``--baseline-pythonpath``), medians printed.

    python bench/bench_pipeline.py --messages 5000 --connections 8 --steady-seconds 30

The machine may be shared: quote the ratios, which compare runs made side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_smtp import (
    BARE_SERVER,
    RssSampler,
    blast,
    free_port,
    message,
    pct,
    scratch_dir,
    wait_for_port,
)
from loopback_plugins import loopback_shop, plugin_config
from sqlalchemy import create_engine, text

if TYPE_CHECKING:
    from postdesk.daemon.runtime import Runtime

AGENTS = """
[[agents]]
email = "alice@example.com"
name = "Alice"

[[agents]]
email = "bob@example.com"
name = "Bob"
"""


def write_config(workdir: Path, port: int, extra: str = "", database: str = "") -> Path:
    """A postdesk.toml for the benchmark: SQLite, Maildir outbound, two agents, no caps."""
    config = workdir / "postdesk.toml"
    config.write_text(
        f'[helpdesk]\naddress = "support@example.com"\ntag = "Bench"\n'
        f'data_dir = "{workdir / "data"}"\nsecret = "bench-secret"\ndatabase = "{database}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{port}"\n'
        "[outbound]\nauto_per_recipient_10min = 100000000\nauto_per_recipient_day = 100000000\nauto_total_per_hour = 100000000\n"
        f"{extra}\n{AGENTS}"
    )
    return config


def worker_pid(serve: int) -> int:
    """The worker process among the children of ``serve``."""
    for _ in range(100):
        spawned = spawned_pids(serve)
        if spawned:
            return spawned[0]
        time.sleep(0.1)
    raise SystemExit("no worker process found")


def spawned_pids(serve: int) -> list[int]:
    """The processes ``serve`` spawned, in the order it started them: its worker first, then
    its plugins process (``daemon/serve.py``)."""
    children = Path(f"/proc/{serve}/task/{serve}/children").read_text().split()
    return [
        int(child)
        for child in children
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def cpu_seconds(pid: int, thread: int = 0) -> float:
    """User + system CPU seconds used so far by process ``pid`` (by its ``thread`` only when
    given: the main thread of serve runs the event loop)."""
    stat = Path(f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def committed_times(engine: object) -> dict[str, float]:
    """Message-ID -> commit time (epoch seconds) of every stored inbound message."""
    query = text("SELECT message_id, created_at FROM messages WHERE direction = 'in'")
    with engine.connect() as connection:  # type: ignore[attr-defined]
        rows = connection.execute(query).all()
    result = {}
    for mid, created in rows:
        moment = datetime.fromisoformat(str(created))
        result[mid] = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return result


def sent_files(workdir: Path) -> int:
    """Mails the outbox has written so far."""
    folder = workdir / "data" / "outbox-sent" / "new"
    return len(os.listdir(folder)) if folder.is_dir() else 0


def last_written(workdir: Path) -> float:
    """When the outbox wrote its last mail (epoch seconds: the newest file's mtime)."""
    folder = workdir / "data" / "outbox-sent" / "new"
    return max(entry.stat().st_mtime for entry in os.scandir(folder))


def run_pipeline(
    args: argparse.Namespace,
    workdir: Path,
    pythonpath: str = "",
    models: str = "",
    extra: str = "",
) -> dict[str, float]:
    """postdesk serve under a burst of N mails: full-pipeline rate, CPU, latencies, RSS.

    ``pythonpath`` runs another checkout of postdesk (see ``--baseline-pythonpath``);
    ``models`` is a folder of trained ``*.skops`` models the daemon classifies with;
    ``extra`` is added to its configuration (the plugins of ``--plugins``).
    """
    port = free_port()
    config = write_config(workdir, port, extra)
    if models:
        (workdir / "data" / "models").mkdir(parents=True)
        for model in Path(models).glob("*.skops"):
            shutil.copy(model, workdir / "data" / "models" / model.name)
    log = (workdir / "daemon.log").open("wb")
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
    serve = subprocess.Popen(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    sampler = RssSampler(serve.pid)
    try:
        wait_for_port(port)
        worker = worker_pid(serve.pid)
        expected = len(list(Path(models).glob("*.skops"))) if models else 0
        while (workdir / "daemon.log").read_bytes().count(b"model loaded from") < expected:
            time.sleep(0.2)  # the worker loads the models at start: not part of the burst
        helpers = spawned_pids(serve.pid)[1:]  # the plugins process, when plugins are on
        helpers_before = sum(cpu_seconds(pid) for pid in helpers)
        cpu_before, serve_before = cpu_seconds(worker), cpu_seconds(serve.pid)
        loop_before = cpu_seconds(serve.pid, serve.pid)
        sampler.start()
        first = time.time()
        wall, accepted, latencies = asyncio.run(
            blast(port, args.messages, args.connections, args.size)
        )
        serve_cpu = cpu_seconds(serve.pid) - serve_before
        loop_cpu = cpu_seconds(serve.pid, serve.pid) - loop_before
        worker_intake_cpu = cpu_seconds(worker) - cpu_before
        if args.intake_only:
            return {
                "intake_rate": args.messages / wall,
                "serve_cpu_ms": serve_cpu * 1000 / args.messages,
                "loop_cpu_ms": loop_cpu * 1000 / args.messages,
                "worker_intake_cpu_ms": worker_intake_cpu * 1000 / args.messages,
                "p50": pct(latencies, 50),
                "p99": pct(latencies, 99),
            }
        engine = create_engine(f"sqlite:///{workdir / 'data' / 'postdesk.db'}")
        deadline = time.time() + 3600
        drained = 0.0  # when the last ticket was committed (the worker's part done)
        backlog = 0  # mails still to write then
        while time.time() < deadline:
            committed = committed_times(engine)
            if len(committed) >= args.messages:
                written = sent_files(workdir)
                if not drained:
                    drained, backlog = time.time(), 3 * args.messages - written
                if written >= 3 * args.messages:
                    break
            time.sleep(0.2)
        done = time.time()
        cpu = cpu_seconds(worker) - cpu_before
        serve_all_cpu = cpu_seconds(serve.pid) - serve_before
        helpers_cpu = sum(cpu_seconds(pid) for pid in helpers) - helpers_before
        mail_lag = last_written(workdir) - max(committed.values())
        engine.dispose()
    finally:
        sampler.running = False
        serve.terminate()
        serve.wait(60)
    lags = [committed[m] - accepted[m] for m in accepted if m in committed]
    quarter = max(1, len(sampler.samples) // 4)
    return {
        "intake_rate": args.messages / wall,
        "pipeline_rate": args.messages / (done - first),
        "worker_rate": args.messages / (drained - first),
        "outbox_tail": done - drained,
        "mail_lag": mail_lag,
        "serve_all_cpu_ms": serve_all_cpu * 1000 / args.messages,
        "plugins_cpu_ms": helpers_cpu * 1000 / args.messages,
        "outbox_backlog": backlog,
        "cpu_ms": cpu * 1000 / args.messages,
        "serve_cpu_ms": serve_cpu * 1000 / args.messages,
        "loop_cpu_ms": loop_cpu * 1000 / args.messages,
        "worker_intake_cpu_ms": worker_intake_cpu * 1000 / args.messages,
        "per_cpu_second": args.messages / cpu if cpu else float("inf"),
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "lag50": pct(lags, 50),
        "lag99": pct(lags, 99),
        "rss_early": statistics.mean(sampler.samples[:quarter]),
        "rss_late": statistics.mean(sampler.samples[-quarter:]),
        "rss_peak": max(sampler.samples),
    }


def run_steady(args: argparse.Namespace, workdir: Path, extra: str = "") -> dict[str, float]:
    """Offer ``steady_rate`` mails/s for ``steady_seconds`` (``extra`` added to the
    configuration: the plugins of ``--plugins``); p50 and p99 (ms) of DATA -> ticket committed
    and of DATA -> agent notification written, and how many of those notifications show orders."""
    port = free_port()
    config = write_config(workdir, port, extra)
    serve = subprocess.Popen(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "serve"],
        stdout=(workdir / "steady.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    total = int(args.steady_rate * args.steady_seconds)
    offered: dict[str, float] = {}
    try:
        wait_for_port(port)
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            # serve answers SMTP before its worker (and plugins process) has started: a first
            # mail, left out of the figures, is processed before the steady load begins
            client.sendmail(
                "customer@example.org", ["support@example.com"], message(total, args.size)
            )
            committed_once(workdir, time.time() + 120)
            start = time.time()
            for number in range(total):
                pause = start + number / args.steady_rate - time.time()
                if pause > 0:
                    time.sleep(pause)
                raw = message(number, args.size)
                offered[f"<bench-{number}@example.org>"] = time.time()
                client.sendmail("customer@example.org", ["support@example.com"], raw)
        engine = create_engine(f"sqlite:///{workdir / 'data' / 'postdesk.db'}")
        deadline = time.time() + 600
        while len(committed := committed_times(engine)) <= total and time.time() < deadline:
            time.sleep(0.2)
        engine.dispose()
        # an acknowledgement and two agent notifications each
        while sent_files(workdir) < 3 * (total + 1) and time.time() < deadline:
            time.sleep(0.2)
    finally:
        serve.terminate()
        serve.wait(60)
    lags = [committed[m] - offered[m] for m in offered if m in committed]
    notified = [found for found in agent_notifications(workdir) if found[0] in offered]
    told = [at - offered[m] for m, at, _orders in notified]
    return {
        "p50": pct(lags, 50),
        "p99": pct(lags, 99),
        "total": total,
        "notified50": pct(told, 50),
        "notified99": pct(told, 99),
        "notifications": len(notified),
        "with_orders": sum(orders for _m, _at, orders in notified),
    }


def committed_once(workdir: Path, deadline: float) -> None:
    """Wait until the first inbound message is committed (or ``deadline``)."""
    engine = create_engine(f"sqlite:///{workdir / 'data' / 'postdesk.db'}")
    try:
        while not committed_times(engine) and time.time() < deadline:
            time.sleep(0.05)
    finally:
        engine.dispose()


def agent_notifications(workdir: Path) -> list[tuple[str, float, bool]]:
    """Of each agent notification the outbox wrote: the customer's Message-ID it answers, when
    it was written (epoch seconds: the file's mtime), and whether it shows orders (the
    ``Order:`` lines the plugins' facts add, templates/agent/_plugin_facts.txt.j2)."""
    agents = {"alice@example.com", "bob@example.com"}
    folder = workdir / "data" / "outbox-sent" / "new"
    found = []
    for path in folder.iterdir():
        mail = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        if str(mail["To"]) not in agents:
            continue
        body = mail.get_body(("plain",))
        text = body.get_content() if isinstance(body, EmailMessage) else ""
        orders = any(line.startswith("Order:") for line in text.splitlines())
        found.append((str(mail["In-Reply-To"]), path.stat().st_mtime, orders))
    return found


def acknowledgements(raws: list[bytes], prefix: str, now: datetime) -> list[Any]:
    """``raws`` as composed acknowledgements to one customer, due ``now``, as ``outbox._record``
    of the checkout that runs takes them (Message-IDs ``<out-{prefix}{n}@example.com>``)."""
    from postdesk.daemon.outbound.outbox import _Outgoing
    from postdesk.daemon.outbound.templating import Rendered

    rendered = Rendered("bench", "bench", None)
    customer = ["customer@example.org"]
    return [
        _Outgoing(
            "acknowledgement",
            customer,
            f"<out-{prefix}{n}@example.com>",
            True,
            raw,
            rendered,
            False,
            now,
        )
        for n, raw in enumerate(raws)
    ]


def queue_backlog(runtime: Runtime, raws: list[bytes]) -> None:
    """Commit ``raws`` as due acknowledgements of one ticket, written as the worker writes a
    ticket's mail (``outbox._record`` of the checkout that runs): the outbox sender's backlog."""
    from postdesk.daemon.outbound.outbox import _record
    from postdesk.models.schema import Ticket, utcnow

    with runtime.factory() as session, session.begin():
        ticket = Ticket(number=1, subject="bench", requester="customer@example.org")
        session.add(ticket)
        session.flush()
        now = utcnow()
        outs = acknowledgements(raws, "", now)
        for start in range(0, len(outs), 500):
            _record(session, runtime.settings, ticket, outs[start : start + 500], now)


def run_outbound(args: argparse.Namespace, workdir: Path) -> tuple[float, float]:
    """Mails/s: a plain smtplib client, then the outbox sender, to one bare aiosmtpd relay."""
    from postdesk.daemon.config import load_settings
    from postdesk.daemon.outbound.sender import OutboxSender
    from postdesk.daemon.runtime import open_runtime

    relay_port = free_port()
    relay = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(relay_port)])
    try:
        wait_for_port(relay_port)
        raws = [message(n, args.size).replace(b"\n", b"\r\n") for n in range(args.outbound)]
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", relay_port, timeout=60) as client:
            for raw in raws:
                client.sendmail("support@example.com", ["customer@example.org"], raw)
        plain = args.outbound / (time.perf_counter() - started)

        extra = f'relay = "smtp://127.0.0.1:{relay_port}"\nconnections = {args.relay_connections}'
        config = write_config(workdir, free_port())
        config.write_text(config.read_text().replace("[outbound]\n", f"[outbound]\n{extra}\n"))
        runtime = open_runtime(load_settings(str(config), environ={}))
        queue_backlog(runtime, raws)
        sender = OutboxSender(runtime.settings, runtime.factory)
        started = time.perf_counter()
        handled = asyncio.run(sender.drain_once())
        ours = handled / (time.perf_counter() - started)
        runtime.engine.dispose()
    finally:
        relay.terminate()
        relay.wait()
    return plain, ours


def process_cpu(serve: int, database: str, admin: object) -> dict[str, float]:
    """CPU seconds so far of serve (``serve``: its event loop thread, ``serve-threads``: the
    others), of each worker process (``worker <pid>``) and of the PostgreSQL backends serving
    ``database`` (``postgres``, added up)."""
    usage = {"serve": cpu_seconds(serve, serve)}
    usage["serve-threads"] = cpu_seconds(serve) - usage["serve"]
    for child in Path(f"/proc/{serve}/task/{serve}/children").read_text().split():
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                usage[f"worker {child}"] = cpu_seconds(int(child))
        except OSError:
            continue
    query = text("SELECT pid FROM pg_stat_activity WHERE datname = :name")
    with admin.connect() as connection:  # type: ignore[attr-defined]
        backends = connection.execute(query, {"name": database}).scalars().all()
    usage["postgres"] = 0.0
    for pid in backends:
        try:
            usage["postgres"] += cpu_seconds(pid)
        except OSError:  # it ended meanwhile
            continue
    return usage


def bytecode_env(pythonpath: str, cache: str) -> dict[str, str]:
    """The environment of a serve under measure: bytecode kept in ``cache`` (as an installed
    package has it), so that start-up is not every module compiled anew in every process (this
    machine sets PYTHONDONTWRITEBYTECODE); ``pythonpath`` runs another checkout."""
    env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    modules = "postdesk.daemon.cli, postdesk.daemon.serve, postdesk.daemon.workerproc"
    subprocess.run([sys.executable, "-c", f"import {modules}"], env=env, check=True)
    return env


def run_postgres_workers(
    args: argparse.Namespace, workers: int, env: dict[str, str] | None = None
) -> dict[str, float]:
    """``workers`` processes draining N pre-spooled mails on PostgreSQL: the rate from serve's
    start (start-up included) and from the first stored message, the seconds until it, each
    process's CPU per message from then on, and messages per database commit meanwhile."""
    from postdesk.daemon.intake.spool import Envelope, Spool

    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    name = f"postdesk_bench_{os.getpid()}_{workers}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
    commits = text("SELECT xact_commit FROM pg_stat_database WHERE datname = :name")
    try:
        with scratch_dir() as folder:
            workdir = Path(folder)
            port = free_port()
            config = write_config(workdir, port, database=url)
            config.write_text(config.read_text() + f"\n[processing]\nworkers = {workers}\n")
            spool = Spool(workdir / "data" / "spool")
            for number in range(args.pg_messages):
                envelope = Envelope("customer@example.org", ("support@example.com",), "bench", 0.0)
                spool.write(message(number, args.size).replace(b"\n", b"\r\n"), envelope)
            engine = create_engine(url)
            started = time.time()
            serve = subprocess.Popen(
                [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "serve"],
                stdout=(workdir / "serve.log").open("wb"),
                stderr=subprocess.STDOUT,
                env=env,
            )
            try:
                query = text("SELECT count(*) FROM messages WHERE direction = 'in'")
                stored, first, stored_first = 0, 0.0, 0
                cpu_first: dict[str, float] = {}
                commits_first = 0
                while stored < args.pg_messages and time.time() - started < 1800:
                    time.sleep(0.2)
                    try:
                        with engine.connect() as connection:
                            stored = int(connection.execute(query).scalar_one())
                    except Exception:  # the schema is still being created
                        continue
                    if stored and not first:  # CPU and commits counted from here on
                        first, stored_first = time.time(), stored
                        cpu_first = process_cpu(serve.pid, name, admin)
                        with admin.connect() as connection:
                            commits_first = connection.execute(commits, {"name": name}).scalar()
                elapsed = time.time() - started
                cpu_last = process_cpu(serve.pid, name, admin)
                with admin.connect() as connection:
                    commits_last = connection.execute(commits, {"name": name}).scalar()
                first_stored, last_stored = _stored_span(engine)
            finally:
                serve.terminate()
                serve.wait(60)
                engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    messages = args.pg_messages
    # from the first to the last stored message (the database's clock), start-up excluded
    drained = (messages - 1) / max(last_stored - first_stored, 1e-6)
    counted = messages - stored_first
    result = {
        "rate": messages / elapsed,
        "startup": first_stored - started,
        "drain_rate": drained,
        "commits_per_message": (commits_last - commits_first) / counted,
        "load": os.getloadavg()[0],
    }
    for key, seconds in cpu_last.items():
        result[f"cpu {key}"] = (seconds - cpu_first.get(key, 0.0)) * 1000 / counted
    return result


def _stored_span(engine: object) -> tuple[float, float]:
    """Epoch seconds at which the first and the last inbound message were stored."""
    query = text("SELECT min(created_at), max(created_at) FROM messages WHERE direction = 'in'")
    with engine.connect() as connection:  # type: ignore[attr-defined]
        span = connection.execute(query).one()
    moments = [datetime.fromisoformat(str(value)) for value in span]
    return tuple(  # type: ignore[return-value]
        (m if m.tzinfo else m.replace(tzinfo=UTC)).timestamp() for m in moments
    )


def run_in_process(
    args: argparse.Namespace,
    workdir: Path,
    database: str = "",
    server_cpu: Callable[[], float] = lambda: 0.0,
) -> tuple[float, float, float, float]:
    """The worker alone, in this process, over N spooled new-ticket mails on SQLite (or on the
    PostgreSQL ``database`` URL): CPU ms, SQL statements and KB of statement parameters (bytes
    and text handed to the database) per message (no SMTP, no process start-up; steadier on a
    shared machine), and the ms per message of ``server_cpu`` (CPU seconds so far of the
    database's server processes) over the same drain."""
    from sqlalchemy import event

    from postdesk.daemon.config import load_settings
    from postdesk.daemon.intake.spool import Envelope
    from postdesk.daemon.runtime import open_runtime
    from postdesk.daemon.worker import DatabaseHealth, Worker

    config = write_config(workdir, free_port(), database=database)
    runtime = open_runtime(load_settings(str(config), environ={}))
    for number in range(args.in_process + 1):
        envelope = Envelope("customer@example.org", ("support@example.com",), "bench", 0.0)
        runtime.spool.write(message(number, args.size).replace(b"\n", b"\r\n"), envelope)
    worker = Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth())
    worker.process(runtime.spool.claim())  # type: ignore[arg-type]  # warm-up: imports, caches
    statements = 0
    sent = 0  # bytes of the bytes and text parameters

    def count(*args: object) -> None:
        nonlocal statements, sent
        statements += 1
        sent += _parameter_bytes(args[3])

    event.listen(runtime.engine, "before_cursor_execute", count)
    server = server_cpu()
    started = time.process_time()
    done = len(worker.drain())
    cpu = time.process_time() - started
    server = server_cpu() - server
    runtime.engine.dispose()
    return cpu * 1000 / done, statements / done, sent / 1024 / done, server * 1000 / done


def _in_process_postgres(args: argparse.Namespace) -> None:
    """:func:`run_in_process` on a fresh PostgreSQL database, with the CPU its backends used
    per message meanwhile (the database is dropped after)."""
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    name = f"postdesk_bench_{os.getpid()}_in_process"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    backends = text("SELECT pid FROM pg_stat_activity WHERE datname = :name")

    def backend_cpu() -> float:
        with admin.connect() as connection:
            pids = connection.execute(backends, {"name": name}).scalars().all()
        return sum(cpu_seconds(pid) for pid in pids)

    try:
        with scratch_dir() as workdir:
            url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
            cpu_ms, statements, kib, backend_ms = run_in_process(
                args, Path(workdir), url, backend_cpu
            )
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(f"in-process worker, {args.in_process} new-ticket mails on PostgreSQL:")
    print(
        f"  CPU per message {cpu_ms:.2f} ms, PostgreSQL backends {backend_ms:.2f} ms,"
        f" SQL statements per message {statements:.1f}, parameters {kib:.1f} KiB"
    )


def _parameter_bytes(parameters: object) -> int:
    """The bytes of the bytes and text values among statement ``parameters`` (one row or
    many, positional or named)."""
    if isinstance(parameters, (bytes, str)):
        return len(parameters)
    if isinstance(parameters, memoryview):  # how the SQLite dialect binds bytes
        return parameters.nbytes
    if isinstance(parameters, dict):
        return _parameter_bytes(list(parameters.values()))
    if isinstance(parameters, (list, tuple)):
        return sum(_parameter_bytes(value) for value in parameters)
    return 0


def main() -> None:
    """Run every measurement and print numbers with their same-run baselines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="0 skips the pipeline")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--size", type=int, default=4000, help="approximate body bytes")
    parser.add_argument("--steady-seconds", type=float, default=0, help="0 skips it")
    parser.add_argument("--steady-rate", type=float, default=100)
    parser.add_argument("--outbound", type=int, default=2000, help="mails; 0 skips it")
    parser.add_argument("--relay-connections", type=int, default=4)
    parser.add_argument(
        "--baseline-pythonpath",
        default="",
        help="a folder holding postdesk/{daemon,models,plugins,templates} of another checkout:"
        " its pipeline is measured too, in the same run",
    )
    parser.add_argument(
        "--postgres",
        default="",
        help="admin URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres: measure"
        " 2 worker processes against 1 draining pre-spooled mail",
    )
    parser.add_argument("--pg-messages", type=int, default=1000)
    parser.add_argument(
        "--pg-rounds",
        type=int,
        default=1,
        help="with --postgres: rounds of 1 and 2 workers (each round in the other order; with"
        " --baseline-pythonpath the baseline too, alternating), medians printed",
    )
    parser.add_argument(
        "--models",
        default="",
        help="a folder of trained models (spam.skops, category.skops from 'postdesk train'):"
        " the pipeline is measured with them too, in the same run",
    )
    parser.add_argument(
        "--plugins",
        action="store_true",
        help="the burst and the steady load are measured again with the three built-in plugins"
        " (CRM, order lookup against a loopback shop, webhook), in the same run: prints the loss",
    )
    parser.add_argument("--shop-delay", type=float, default=0.05, help="seconds per shop answer")
    parser.add_argument(
        "--intake-only",
        action="store_true",
        help="stop each pipeline run at the last 250: intake rate, serve CPU, DATA->250",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --intake-only and --baseline-pythonpath: alternating rounds, medians printed",
    )
    parser.add_argument(
        "--in-process", type=int, default=0, help="mails for the in-process worker loop; 0 skips"
    )
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"cpus {os.cpu_count()}, load average at start {load:.1f} (a shared machine)")
    if args.messages and args.intake_only and args.baseline_pythonpath and args.rounds > 1:
        _intake_rounds(args)
    elif args.messages:
        bare = args.messages / asyncio.run(_bare(args))
        with scratch_dir() as workdir:
            result = run_pipeline(args, Path(workdir))
        print(
            f"pipeline: {args.messages} mails x ~{args.size} B over {args.connections} connections"
        )
        print(f"  bare aiosmtpd                 : {bare:8.1f} msg/s")
        _print_intake(result, bare)
        if not args.intake_only:
            _print_pipeline(result, bare)
        if args.models and not args.intake_only:
            with scratch_dir() as workdir:
                judged = run_pipeline(args, Path(workdir), models=args.models)
            print(f"with the classifier's models ({args.models}), same burst:")
            print(
                f"  full pipeline {judged['pipeline_rate']:8.1f} msg/s; worker CPU"
                f" {judged['cpu_ms']:.2f} ms/msg; RSS peak {judged['rss_peak']:.1f} MiB"
            )
            print(
                f"  with / without: rate x{judged['pipeline_rate'] / result['pipeline_rate']:.3f},"
                f" worker CPU per message x{judged['cpu_ms'] / result['cpu_ms']:.3f}"
            )
        if args.plugins and not args.intake_only:
            _with_plugins(args, result)
        if args.baseline_pythonpath:
            with scratch_dir() as workdir:
                old = run_pipeline(args, Path(workdir), args.baseline_pythonpath)
            print(f"baseline checkout ({args.baseline_pythonpath}), same burst:")
            _print_intake(old, bare)
            print(
                f"  this checkout / baseline: intake x{result['intake_rate'] / old['intake_rate']:.2f},"
                f" serve CPU per message x{result['serve_cpu_ms'] / old['serve_cpu_ms']:.2f}"
            )
            if not args.intake_only:
                print(
                    f"  full pipeline {old['pipeline_rate']:8.1f} msg/s (ratio to bare"
                    f" {old['pipeline_rate'] / bare:.3f}); worker CPU {old['cpu_ms']:.2f} ms/msg"
                )
                print(
                    f"  until the last ticket commit {old['worker_rate']:8.1f} msg/s (then"
                    f" {old['outbox_tail']:.1f} s of outbox for {old['outbox_backlog']:.0f} mails);"
                    f" 250->committed p50 {old['lag50']:.0f} ms"
                )
                print(
                    f"  last mail written {old['mail_lag']:.2f} s after the last ticket's"
                    f" created_at; serve CPU over the whole run {old['serve_all_cpu_ms']:.2f} ms/msg"
                )
                print(
                    f"  this checkout / baseline: rate x{result['pipeline_rate'] / old['pipeline_rate']:.2f},"
                    f" worker CPU per message x{result['cpu_ms'] / old['cpu_ms']:.2f}"
                )
    if args.in_process:
        with scratch_dir() as workdir:
            cpu_ms, statements, kib, _server = run_in_process(args, Path(workdir))
        print(f"in-process worker, {args.in_process} new-ticket mails on SQLite:")
        print(
            f"  CPU per message {cpu_ms:.2f} ms, SQL statements per message {statements:.1f},"
            f" parameters written per message {kib:.1f} KiB"
        )
        if args.postgres:
            _in_process_postgres(args)
    if args.steady_seconds:
        _steady(args)
    if args.postgres and args.pg_messages:
        _postgres_rounds(args)
    if args.outbound:
        with scratch_dir() as workdir:
            plain, ours = run_outbound(args, Path(workdir))
        print(f"outbound: {args.outbound} mails to a bare aiosmtpd relay")
        print(f"  plain smtplib, one connection : {plain:8.1f} mails/s")
        print(
            f"  postdesk sender, {args.relay_connections} connections: {ours:8.1f} mails/s"
            f"  ratio {ours / plain:.2f}"
        )


def _print_intake(result: dict[str, float], bare: float) -> None:
    """The intake lines of a pipeline run: rate (and ratio to bare), serve CPU, DATA->250."""
    print(
        f"  postdesk intake (250s)        : {result['intake_rate']:8.1f} msg/s"
        f"  ratio to bare {result['intake_rate'] / bare:.3f}"
    )
    print(
        f"  serve CPU per message (intake): {result['serve_cpu_ms']:8.2f} ms"
        f"  (event loop thread {result['loop_cpu_ms']:.2f} ms; the rest: fsync and outbound"
        " threads)"
    )
    print(
        f"  worker CPU meanwhile          : {result['worker_intake_cpu_ms']:8.2f} ms per message"
        " received (it competes with intake for the cores)"
    )
    print(f"  DATA->250 p50/p99             : {result['p50']:.1f} / {result['p99']:.1f} ms")


def _print_pipeline(result: dict[str, float], bare: float) -> None:
    """The full-pipeline lines of a pipeline run: rate, worker CPU, commit lag, RSS."""
    print(
        f"  postdesk full pipeline        : {result['pipeline_rate']:8.1f} msg/s"
        f"  ratio to bare {result['pipeline_rate'] / bare:.3f}"
    )
    print(
        f"  until the last ticket commit  : {result['worker_rate']:8.1f} msg/s"
        f"  (then {result['outbox_tail']:.1f} s until the outbox wrote the last"
        f" {result['outbox_backlog']:.0f} mails)"
    )
    print(
        f"  last mail written             : {result['mail_lag']:8.2f} s after the last ticket's"
        f" created_at (serve CPU over the whole run {result['serve_all_cpu_ms']:.2f} ms/msg)"
    )
    print(
        f"  worker CPU per message        : {result['cpu_ms']:8.2f} ms"
        f"  ({result['per_cpu_second']:.0f} msg per worker-CPU-second)"
    )
    print(f"  250->committed p50/p99        : {result['lag50']:.0f} / {result['lag99']:.0f} ms")
    print(
        f"  RSS serve+worker              : first quarter {result['rss_early']:.1f} MiB,"
        f" last quarter {result['rss_late']:.1f} MiB, peak {result['rss_peak']:.1f} MiB"
    )


def _with_plugins(args: argparse.Namespace, plain: dict[str, float]) -> None:
    """The same burst with the three built-in plugins on; their cost against ``plain``."""
    with loopback_shop(args.shop_delay) as (port, shop), scratch_dir() as workdir:
        result = run_pipeline(args, Path(workdir), extra=plugin_config(port, "all"))
        shop_ms = cpu_seconds(shop) * 1000 / args.messages
    print(
        f"with the built-in plugins (CRM, orders from a {args.shop_delay * 1000:.0f} ms loopback"
        " shop, webhook), same burst:"
    )
    print(
        f"  full pipeline {result['pipeline_rate']:8.1f} msg/s; until the last ticket commit"
        f" {result['worker_rate']:.1f} msg/s"
    )
    print(
        f"  CPU per message: worker {result['cpu_ms']:.2f} ms (without {plain['cpu_ms']:.2f}),"
        f" serve {result['serve_all_cpu_ms']:.2f} ms (without {plain['serve_all_cpu_ms']:.2f}),"
        f" plugins process {result['plugins_cpu_ms']:.2f} ms; the loopback shop and receiver"
        f" (not postdesk, sharing the machine) {shop_ms:.2f} ms"
    )
    for label, key in (
        ("full pipeline", "pipeline_rate"),
        ("until the last commit", "worker_rate"),
    ):
        ratio = result[key] / plain[key]
        print(f"  with / without, {label}: x{ratio:.3f} (loss {(1 - ratio) * 100:.1f}%)")


def _steady(args: argparse.Namespace) -> None:
    """The steady load, and with ``--plugins`` the same load with the built-in plugins on."""
    with scratch_dir() as workdir:
        plain = run_steady(args, Path(workdir))
    print(
        f"steady {args.steady_rate:.0f} msg/s for {args.steady_seconds:.0f} s ({plain['total']:.0f} mails):"
        f" DATA->committed p50 {plain['p50']:.0f} ms, p99 {plain['p99']:.0f} ms;"
        f" DATA->agent notification written p50 {plain['notified50']:.0f} ms,"
        f" p99 {plain['notified99']:.0f} ms"
    )
    if not args.plugins:
        return
    with loopback_shop(args.shop_delay) as (port, _shop), scratch_dir() as workdir:
        result = run_steady(args, Path(workdir), plugin_config(port, "all"))
    print(
        f"  with the built-in plugins ({args.shop_delay * 1000:.0f} ms shop): DATA->committed"
        f" p50 {result['p50']:.0f} ms, p99 {result['p99']:.0f} ms; DATA->agent notification"
        f" written p50 {result['notified50']:.0f} ms, p99 {result['notified99']:.0f} ms;"
        f" notifications showing the shop's orders: {result['with_orders']:.0f} of"
        f" {result['notifications']:.0f}"
    )


def _intake_rounds(args: argparse.Namespace) -> None:
    """Intake of this checkout and the baseline in alternating order, round after round (a
    bare run first in each); per-run lines, then the medians."""
    runs: dict[str, list[dict[str, float]]] = {"this checkout": [], "baseline": []}
    paths = {"this checkout": "", "baseline": args.baseline_pythonpath}
    for number in range(args.rounds):
        bare = args.messages / asyncio.run(_bare(args))
        order = list(runs) if number % 2 == 0 else list(reversed(runs))
        for name in order:
            with scratch_dir() as workdir:
                result = run_pipeline(args, Path(workdir), paths[name])
            result["ratio"] = result["intake_rate"] / bare
            runs[name].append(result)
            print(
                f"round {number} {name:13s}: {result['intake_rate']:6.1f} msg/s (bare {bare:.1f},"
                f" ratio {result['ratio']:.3f}), serve CPU {result['serve_cpu_ms']:.2f} ms/msg"
                f" (loop {result['loop_cpu_ms']:.2f}), DATA->250 p50/p99 {result['p50']:.1f} /"
                f" {result['p99']:.1f} ms"
            )
    for name, results in runs.items():
        median = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(
            f"median {name:13s}: {median['intake_rate']:6.1f} msg/s, ratio to bare"
            f" {median['ratio']:.3f}, serve CPU {median['serve_cpu_ms']:.2f} ms/msg (loop"
            f" {median['loop_cpu_ms']:.2f}), DATA->250 p50/p99 {median['p50']:.1f} /"
            f" {median['p99']:.1f} ms"
        )


def _postgres_rounds(args: argparse.Namespace) -> None:
    """1 and 2 workers on PostgreSQL, round after round in alternating order (and the baseline
    checkout alternating with this one when given): one line per run, the 2/1 ratios per round,
    then their medians. A ratio is the rate from serve's start (start-up included), and the rate
    from the first stored message (the drain alone); CPU per message says where the time went.
    Bytecode is cached for all the runs (see :func:`bytecode_env`)."""
    paths = {"this checkout": ""}
    if args.baseline_pythonpath:
        paths["baseline"] = args.baseline_pythonpath
    ratios: dict[str, list[tuple[float, float, float]]] = {name: [] for name in paths}
    print(
        f"PostgreSQL: {args.pg_messages} spooled mails drained by 1 and by 2 worker processes"
        " (bytecode cached, as installed)"
    )
    cache = tempfile.mkdtemp(prefix="bench-pycache-")
    envs = {name: bytecode_env(path, cache) for name, path in paths.items()}
    for number in range(args.pg_rounds):
        names = list(paths) if number % 2 == 0 else list(reversed(paths))
        for name in names:
            runs = {}
            for workers in (1, 2) if number % 2 == 0 else (2, 1):
                runs[workers] = result = run_postgres_workers(args, workers, envs[name])
                _print_postgres_run(f"round {number} {name}", workers, result)
            one, two = runs[1], runs[2]
            cpu = [_total_cpu(run) for run in (one, two)]
            ratios[name].append(
                (two["rate"] / one["rate"], two["drain_rate"] / one["drain_rate"], cpu[1] / cpu[0])
            )
            print(
                f"  round {number} {name}: 2/1 ratio {ratios[name][-1][0]:.2f} (start-up"
                f" included), {ratios[name][-1][1]:.2f} from the first stored message; CPU per"
                f" message 2 workers / 1: {ratios[name][-1][2]:.2f}"
            )
    shutil.rmtree(cache, ignore_errors=True)
    for name, values in ratios.items():
        print(
            f"median {name}: 2/1 ratio {statistics.median(v[0] for v in values):.2f} (start-up"
            f" included), {statistics.median(v[1] for v in values):.2f} from the first stored"
            f" message; CPU per message 2/1 {statistics.median(v[2] for v in values):.2f}"
            f" (ratios: {', '.join(f'{v[0]:.2f}' for v in values)})"
        )


def _total_cpu(result: dict[str, float]) -> float:
    """CPU ms per message of all the processes measured (serve, workers, PostgreSQL)."""
    return sum(value for key, value in result.items() if key.startswith("cpu "))


def _print_postgres_run(label: str, workers: int, result: dict[str, float]) -> None:
    """One PostgreSQL run: rates, start-up, CPU per message per process, commits per message."""
    worker_cpu = " + ".join(
        f"{value:.2f}" for key, value in result.items() if key.startswith("cpu worker")
    )
    print(
        f"{label}, {workers} worker(s): {result['rate']:6.1f} msg/s from start (first stored"
        f" after {result['startup']:.1f} s), {result['drain_rate']:6.1f} msg/s from the first"
        f" stored; load {result['load']:.1f}"
    )
    print(
        f"    CPU ms per message: workers {worker_cpu}, PostgreSQL backends"
        f" {result['cpu postgres']:.2f}, serve loop {result['cpu serve']:.2f} + other threads"
        f" {result['cpu serve-threads']:.2f}; total {_total_cpu(result):.2f};"
        f" commits per message {result['commits_per_message']:.2f}"
    )


async def _bare(args: argparse.Namespace) -> float:
    """Seconds the bare server takes for the burst."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port)])
    try:
        await asyncio.to_thread(wait_for_port, port)
        wall, _accepted, _latencies = await blast(port, args.messages, args.connections, args.size)
    finally:
        server.terminate()
        server.wait()
    return wall


if __name__ == "__main__":
    main()
