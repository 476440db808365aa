"""postdesk against django-helpdesk on the same mails: paired runs, process start-up included.

Builds a throwaway venv (cached in ``--workdir``) with django-helpdesk 2.6.1 from PyPI (or the
newest release that installs; the version is printed) and a minimal Django project written by
this script: SQLite in WAL mode with ``synchronous=NORMAL`` (the pragmas postdesk uses, set by a
``connection_created`` signal), migrations applied, two staff users, and one queue reading a
local mailbox directory (``email_box_type='local'``) whose new tickets are copied to the two
agents (``new_ticket_cc``); outgoing mail goes to Django's file-based e-mail backend.

The same N mails (``bench_smtp.message``: distinct senders and subjects, ~4 KB plain text) are
then fed, ``--repeat`` times in alternating order, to

(a) ``postdesk ingest DIR`` (SQLite, two agents, Maildir outbound), which writes its outbox to
    the Maildir while it processes; a postdesk whose ``ingest`` only stores the outbox rows for
    ``serve`` to send (before 2026-12, e.g. a ``--baseline-python``) is followed by a second
    process that writes them, so both sides end with their mail written, and
(b) ``python manage.py get_email`` of django-helpdesk.

Schema creation (``postdesk init`` / ``manage.py migrate``) happens once, untimed; each run
starts from a copy of that database. postdesk is byte-compiled first, untimed, as ``pip install``
does for a regular install (django-helpdesk's venv is): an editable install is not, and with
``PYTHONDONTWRITEBYTECODE`` set (inherited by postdesk's processes, not by django-helpdesk's,
which get a minimal environment) each postdesk process would compile ~110 modules from source. Prints per run and as medians: msg/s (wall clock), CPU
per message (user+sys of the child processes), the ratio postdesk/django-helpdesk of both
(target: postdesk >= 3x), and the tickets each side stored (must equal N, or the run fails).

    python bench/bench_django_helpdesk.py --workdir /tmp/dh-bench --messages 1000 --repeat 5

``--baseline-python`` adds a third side to every repetition: the same ``postdesk`` steps run by
another interpreter (e.g. the venv of a checkout of ``main``), so that a change is measured
against its baseline in the same run; the ratio of both against django-helpdesk is printed.

The machine may be shared: the load average is printed; CPU per message depends less on it,
and user CPU (printed beside it) less still: system CPU (file creation, fsync) varies with the
other I/O of the machine. The runs' files are deleted only after the last repetition: on ext4
without a journal, creating a file skips (one page-cache lookup each) every inode of its block
group freed in the last one to six minutes, so the ~10,000 files of a repetition deleted before
the next one added ~1 ms of system CPU per message to both sides (postdesk creates a spool file
and three mail files per message, django-helpdesk's file back-end ~1.8 files): a cost of the
bench's clean-up, not of either system. Deletions by the systems themselves
(postdesk's processed spool files, django-helpdesk's read mails) and by other programs remain.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench_smtp import message

HELPDESK_VERSION = "2.6.1"

SETTINGS = textwrap.dedent(
    """
    import os

    from django.db.backends.signals import connection_created

    SECRET_KEY = "bench-only"
    DEBUG = False
    ALLOWED_HOSTS = ["127.0.0.1"]
    INSTALLED_APPS = [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.sites",
        "django.contrib.humanize",
        "rest_framework",
        "helpdesk",
    ]
    MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ]
    TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ]
    ROOT_URLCONF = "bench_urls"
    SITE_ID = 1
    USE_TZ = True
    TIME_ZONE = "UTC"
    DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["BENCH_DB"]}
    }
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = os.environ["BENCH_OUTBOX"]
    DEFAULT_FROM_EMAIL = "support@example.com"
    HELPDESK_TEAMS_MODE_ENABLED = False
    LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}


    def _pragmas(sender, connection, **kwargs):
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")


    connection_created.connect(_pragmas)
    """
)

URLS = textwrap.dedent(
    """
    from django.urls import include, path

    urlpatterns = [path("helpdesk/", include("helpdesk.urls", namespace="helpdesk"))]
    """
)

MANAGE = textwrap.dedent(
    """
    import os
    import sys

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench_settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
    """
)

SETUP_QUEUE = textwrap.dedent(
    """
    import sys
    from django.contrib.auth import get_user_model
    from helpdesk.models import Queue

    users = get_user_model()
    for name in ("alice", "bob"):
        users.objects.create_user(name, f"{name}@example.com", "x", is_staff=True)
    Queue.objects.create(
        title="Support",
        slug="support",
        email_address="support@example.com",
        allow_email_submission=True,
        email_box_type="local",
        email_box_local_dir=sys.argv[1],
        email_box_interval=0,
        new_ticket_cc="alice@example.com, bob@example.com",
        logging_type="none",
    )
    """
)

FLUSH_OUTBOX = textwrap.dedent(
    """
    import asyncio, sys
    from postdesk.daemon.config import load_settings
    from postdesk.daemon.outbound.sender import OutboxSender
    from postdesk.daemon.runtime import open_runtime

    runtime = open_runtime(load_settings(sys.argv[1], environ={}))
    sender = OutboxSender(runtime.settings, runtime.factory)
    while asyncio.run(sender.drain_once()):
        pass
    runtime.engine.dispose()
    """
)

POSTDESK_CONFIG = """[helpdesk]
address = "support@example.com"
tag = "Bench"
data_dir = "{data}"
secret = "bench-secret"

[outbound]
auto_per_recipient_10min = 100000000
auto_per_recipient_day = 100000000
auto_total_per_hour = 100000000

[[agents]]
email = "alice@example.com"
name = "Alice"

[[agents]]
email = "bob@example.com"
name = "Bob"
"""


class BenchError(Exception):
    """A set-up or run step failed; the message says which and why."""


def run(command: list[str], what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``command``; raise :class:`BenchError` with the tail of its output if it fails."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BenchError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done


def ensure_venv(workdir: Path, wanted: str) -> tuple[Path, str]:
    """A venv with django-helpdesk in ``workdir/venv`` (reused when ready); python, version."""
    venv = workdir / "venv"
    python = venv / "bin" / "python"
    marker = venv / "bench-ready"
    if marker.is_file():
        return python, marker.read_text().strip()
    shutil.rmtree(venv, ignore_errors=True)
    print(f"creating {venv} and installing django-helpdesk {wanted} from PyPI ...", flush=True)
    run([sys.executable, "-m", "venv", str(venv)], "creating the venv")
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    try:
        run([*pip, f"django-helpdesk=={wanted}"], f"pip install django-helpdesk=={wanted}")
    except BenchError as error:
        print(f"{error}\nfalling back to the newest django-helpdesk that installs", flush=True)
        run([*pip, "django-helpdesk"], "pip install django-helpdesk")
    version = run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('django-helpdesk'))"],
        "reading the installed django-helpdesk version",
    ).stdout.strip()
    marker.write_text(version)
    return python, version


def django_env(project: Path, database: Path, outbox: Path) -> dict[str, str]:
    """Environment of a ``manage.py`` call for the bench project."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(project)),
        "DJANGO_SETTINGS_MODULE": "bench_settings",
        "BENCH_DB": str(database),
        "BENCH_OUTBOX": str(outbox),
    }


def prepare_django(python: Path, workdir: Path, version: str) -> Path:
    """Write the project, migrate a template database and add the queue (reused when ready)."""
    project = workdir / f"django-project-{version}"
    template = project / "template.sqlite3"
    if (project / "bench-ready").is_file():
        return project
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    (project / "bench_settings.py").write_text(SETTINGS)
    (project / "bench_urls.py").write_text(URLS)
    (project / "manage.py").write_text(MANAGE)
    (project / "inbox").mkdir()
    (project / "outbox").mkdir()
    env = django_env(project, template, project / "outbox")
    print("applying django-helpdesk's migrations (once) ...", flush=True)
    run([str(python), "manage.py", "migrate", "-v0"], "manage.py migrate", cwd=project, env=env)
    run(
        [
            str(python),
            "-c",
            f"import django; django.setup()\n{SETUP_QUEUE}",
            str(project / "inbox"),
        ],
        "creating the queue and agents",
        cwd=project,
        env=env,
    )
    (project / "bench-ready").write_text(version)
    return project


BYTE_COMPILE = textwrap.dedent(
    """
    import compileall, importlib.util, sys

    for package in ("postdesk.daemon", "postdesk.models", "postdesk.plugins"):
        spec = importlib.util.find_spec(package)
        if spec is None or spec.submodule_search_locations is None:
            sys.exit(f"{package} is not installed")
        for folder in spec.submodule_search_locations:
            if not compileall.compile_dir(folder, quiet=1):
                sys.exit(f"cannot byte-compile {folder}")
    """
)


def byte_compile_postdesk(python: str) -> None:
    """Compile the modules of the postdesk that ``python`` imports to bytecode, as ``pip
    install`` does for a regular install."""
    run([python, "-c", BYTE_COMPILE], f"byte-compiling postdesk for {python}")


def prepare_postdesk(workdir: Path, python: str, name: str) -> Path:
    """A postdesk database with the schema of the postdesk ``python`` imports (``init``)."""
    byte_compile_postdesk(python)
    data = workdir / f"{name}-template"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    config = data / "postdesk.toml"
    config.write_text(POSTDESK_CONFIG.format(data=data / "data"))
    cli = [python, "-m", "postdesk.daemon.cli", "--config", str(config)]
    run([*cli, "init"], f"{name} init")
    return data / "data" / "postdesk.db"


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of an SQLite database (the WAL setting is kept in the file)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    with sqlite3.connect(target) as dst:
        dst.execute("PRAGMA journal_mode=WAL")


def write_mails(folder: Path, mails: list[bytes]) -> None:
    """One ``.eml`` file per mail in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, raw in enumerate(mails):
        (folder / f"{number:06d}.eml").write_bytes(raw)


def child_cpu() -> float:
    """User + system CPU seconds of all waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child_system_cpu() -> float:
    """System (kernel) CPU seconds of all waited-for child processes so far: file creation,
    fsync and the like, which varies with the other I/O of a shared machine."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime


def count(database: Path, query: str) -> int:
    """The single integer ``query`` returns from ``database``."""
    with sqlite3.connect(database) as connection:
        return int(connection.execute(query).fetchone()[0])


def run_postdesk(python: str, folder: Path, template: Path, mails: list[bytes]) -> dict[str, float]:
    """``postdesk ingest`` of the mails by ``python``, then the outbox written; times, CPU,
    counts."""
    data = folder / "data"
    copy_database(template, data / "postdesk.db")
    config = folder / "postdesk.toml"
    config.write_text(POSTDESK_CONFIG.format(data=data))
    write_mails(folder / "mail", mails)
    cli = [python, "-m", "postdesk.daemon.cli", "--config", str(config)]
    cpu, system, started = child_cpu(), child_system_cpu(), time.perf_counter()
    run([*cli, "ingest", str(folder / "mail")], "postdesk ingest")
    ingested, ingest_cpu = time.perf_counter(), child_cpu()
    if count(data / "postdesk.db", "SELECT count(*) FROM outbox WHERE status = 'pending'"):
        run([python, "-c", FLUSH_OUTBOX, str(config)], "writing postdesk's outbox")
    finished = time.perf_counter()
    outbox = data / "outbox-sent" / "new"
    return {
        "wall": finished - started,
        "cpu": child_cpu() - cpu,
        "system": child_system_cpu() - system,
        "ingest_wall": ingested - started,
        "ingest_cpu": ingest_cpu - cpu,
        "tickets": count(data / "postdesk.db", "SELECT count(*) FROM tickets"),
        "sent": len(os.listdir(outbox)) if outbox.is_dir() else 0,
    }


def run_django(python: Path, project: Path, folder: Path, mails: list[bytes]) -> dict[str, float]:
    """``manage.py get_email`` of the mails from the queue's local directory; times, CPU, counts."""
    database = folder / "helpdesk.sqlite3"
    copy_database(project / "template.sqlite3", database)
    outbox = folder / "outbox"
    outbox.mkdir(parents=True)
    inbox = project / "inbox"
    shutil.rmtree(inbox)
    write_mails(inbox, mails)
    env = django_env(project, database, outbox)
    cpu, system, started = child_cpu(), child_system_cpu(), time.perf_counter()
    run([str(python), "manage.py", "get_email", "--quiet"], "get_email", cwd=project, env=env)
    finished = time.perf_counter()
    sent = sum(
        path.read_text(errors="replace").count("\nMessage-ID: ") for path in outbox.iterdir()
    )
    return {
        "wall": finished - started,
        "cpu": child_cpu() - cpu,
        "system": child_system_cpu() - system,
        "tickets": count(database, "SELECT count(*) FROM helpdesk_ticket"),
        "sent": sent,
    }


def _user(result: dict[str, float]) -> float:
    """User CPU seconds of a run (its CPU less the kernel's share)."""
    return result["cpu"] - result["system"]


def describe(name: str, result: dict[str, float], total: int) -> str:
    """One line of a run's figures."""
    return (
        f"  {name:<15} {total / result['wall']:8.1f} msg/s  {result['cpu'] * 1000 / total:7.2f} ms"
        f" CPU/msg (user {(result['cpu'] - result['system']) * 1000 / total:.2f}, system"
        f" {result['system'] * 1000 / total:.2f})  {int(result['tickets'])} tickets,"
        f" {int(result['sent'])} mails written{_split(result, total)}"
    )


def _split(result: dict[str, float], total: int) -> str:
    """postdesk's CPU per message split into ``ingest`` and the process writing the outbox."""
    if "ingest_cpu" not in result or result["ingest_cpu"] == result["cpu"]:
        return ""
    ingest = result["ingest_cpu"] * 1000 / total
    return f"; ingest {ingest:.2f} + outbox {result['cpu'] * 1000 / total - ingest:.2f} ms"


def main() -> int:
    """Set up both systems, run the paired repetitions and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="paired repetitions")
    parser.add_argument("--size", type=int, default=4000, help="approximate body bytes")
    parser.add_argument("--helpdesk-version", default=HELPDESK_VERSION)
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keeps the venv and migrated project for reruns (else a temp dir)",
    )
    parser.add_argument("--keep", action="store_true", help="keep each run's files and databases")
    parser.add_argument(
        "--baseline-python",
        metavar="PYTHON",
        help="also run postdesk with this interpreter (e.g. a venv of main), in the same pairs",
    )
    args = parser.parse_args()
    if args.messages < 1 or args.repeat < 1:
        parser.error("--messages and --repeat must be at least 1")
    temporary = None if args.workdir else tempfile.mkdtemp(prefix="bench-django-helpdesk-")
    workdir = (args.workdir or Path(str(temporary))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return compare(args, workdir)
    except BenchError as error:
        print(f"bench_django_helpdesk: {error}", file=sys.stderr)
        return 1
    finally:
        if temporary and not args.keep:
            shutil.rmtree(temporary, ignore_errors=True)
        elif args.keep:
            print(f"files kept in {workdir}")


def compare(args: argparse.Namespace, workdir: Path) -> int:
    """The paired repetitions; 0 when every run stored every ticket."""
    python, version = ensure_venv(workdir, args.helpdesk_version)
    project = prepare_django(python, workdir, version)
    postdesks = {"postdesk": sys.executable}
    if args.baseline_python:
        postdesks["baseline"] = args.baseline_python
    templates = {name: prepare_postdesk(workdir, exe, name) for name, exe in postdesks.items()}
    mails = [message(number, args.size) for number in range(args.messages)]
    total = args.messages
    print(
        f"{total} mails x {statistics.mean(map(len, mails)):.0f} B, django-helpdesk {version},"
        f" cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (a shared machine)"
    )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in postdesks}
    runs["django-helpdesk"] = []
    honest = True
    folders = [workdir / f"run-{os.getpid()}-{number}" for number in range(args.repeat)]
    for repetition, folder in enumerate(folders):
        order = list(runs)
        if repetition % 2:
            order.reverse()
        print(f"repetition {repetition + 1} (order: {', '.join(order)}):", flush=True)
        for name in order:
            if name in postdesks:
                result = run_postdesk(postdesks[name], folder / name, templates[name], mails)
            else:
                result = run_django(python, project, folder / "django", mails)
            runs[name].append(result)
            print(describe(name, result, total), flush=True)
            if result["tickets"] != total:
                honest = False
                print(f"  !! {name} stored {int(result['tickets'])} tickets, not {total}")
    for folder in [] if args.keep else folders:  # not between repetitions: see the docstring
        shutil.rmtree(folder, ignore_errors=True)
    print(f"medians of {args.repeat} paired runs (load average now {os.getloadavg()[0]:.1f}):")
    for name, results in runs.items():
        rate = statistics.median(total / r["wall"] for r in results)
        cpu = statistics.median(r["cpu"] * 1000 / total for r in results)
        user = statistics.median((r["cpu"] - r["system"]) * 1000 / total for r in results)
        print(f"  {name:<15} {rate:8.1f} msg/s  {cpu:7.2f} ms CPU/msg (user {user:.2f})")
    theirs = runs["django-helpdesk"]
    for name in postdesks:
        ours = runs[name]
        if all(r["ingest_cpu"] == r["cpu"] for r in ours):
            continue  # its ingest wrote the outbox itself: the medians above are ingest alone
        ingest_rate = statistics.median(total / r["ingest_wall"] for r in ours)
        ingest_cpu = statistics.median(r["ingest_cpu"] * 1000 / total for r in ours)
        print(
            f"  {name} ingest alone (outbox rows stored, not yet written): {ingest_rate:.1f}"
            f" msg/s, {ingest_cpu:.2f} ms CPU/msg"
        )
    for name in postdesks:
        ours = runs[name]
        rate_ratios = [t["wall"] / o["wall"] for o, t in zip(ours, theirs, strict=True)]
        cpu_ratios = [t["cpu"] / o["cpu"] for o, t in zip(ours, theirs, strict=True)]
        user_ratios = [_user(t) / _user(o) for o, t in zip(ours, theirs, strict=True)]
        print(
            f"ratio {name}/django-helpdesk: rate x{statistics.median(rate_ratios):.2f}"
            f" (per pair {', '.join(f'{r:.2f}' for r in rate_ratios)}),"
            f" CPU per message (theirs/ours) x{statistics.median(cpu_ratios):.2f}"
            f" (user CPU x{statistics.median(user_ratios):.2f}); target >= 3x"
        )
    if "baseline" in runs:
        pairs = list(zip(runs["postdesk"], runs["baseline"], strict=True))
        cpu_gain = [b["cpu"] / o["cpu"] for o, b in pairs]
        user_gain = [_user(b) / _user(o) for o, b in pairs]
        print(
            f"CPU per message baseline/postdesk: x{statistics.median(cpu_gain):.3f}"
            f" (per run {', '.join(f'{r:.3f}' for r in cpu_gain)}); user CPU"
            f" x{statistics.median(user_gain):.3f} (per run {', '.join(f'{r:.3f}' for r in user_gain)})"
        )
    if not honest:
        print("FAILED: a run did not store every mail as a ticket; the ratios are not comparable")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
