"""The ``postdesk`` command line (SPEC section 3).

Exit status 2 for usage and configuration errors, 1 for runtime failures, each with one line
on stderr saying what to fix; a traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc

from postdesk.daemon.config import ConfigError, LogSettings, Settings, load_settings
from postdesk.daemon.intake.files import IngestError
from postdesk.daemon.ops.errors import OpsError, OpsUsageError
from postdesk.daemon.ops.logs import LOG_FORMAT, use_log_format
from postdesk.daemon.sla import listing

if TYPE_CHECKING:
    from postdesk.daemon.runtime import Runtime
    from postdesk.daemon.worker import Outcome

# Each command imports what it needs when it runs (``postdesk report`` or ``--help`` must not
# load the worker, the classifier, the SMTP server...): the handlers, the options of the heavier
# commands and the errors below are named by module, not imported up front.
Handler = Callable[[Settings, argparse.Namespace], int]
REPORTS = "postdesk.daemon.reports.commands"
CLASSIFY = "postdesk.daemon.classify.commands"
OPS = "postdesk.daemon.ops.commands"
# Errors that mean "fix your command or configuration" (exit 2) or a runtime failure (exit 1);
# those of a module not imported yet cannot have been raised.
LAZY_USAGE_ERRORS = (
    (REPORTS, "ReportUsageError"),
    (CLASSIFY, "CommandError"),
    ("postdesk.plugins.crm.importer", "ImportFileError"),
)
LAZY_RUNTIME_ERRORS = (("postdesk.daemon.serve", "AlreadyRunning"),)

EXIT_RUNTIME = 1
EXIT_USAGE = 2
PLUGIN_DRAIN_SECONDS = 10.0
OUTBOX_PATIENCE_SECONDS = 30.0  # for the relay, once ingest has processed its mail
SPOOL_FLUSH_SECONDS = 10.0


class UsageError(Exception):
    """The command was given something it cannot use."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``postdesk`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.debug, args.command)
    try:
        settings = load_settings(args.config)
        if args.log_format:
            settings = dataclasses.replace(settings, log=LogSettings(format=args.log_format))
        use_log_format(settings.log.format)
        return int(args.handler(settings, args))
    except _errors(LAZY_USAGE_ERRORS, ConfigError, UsageError, IngestError, OpsUsageError) as error:
        return _fail(args, error, EXIT_USAGE, "")
    except _errors(LAZY_RUNTIME_ERRORS, OpsError) as error:
        return _fail(args, error, EXIT_RUNTIME, "")
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
        return _fail(
            args, error, EXIT_RUNTIME, "cannot reach the database (check helpdesk.database): "
        )
    except OSError as error:
        return _fail(args, error, EXIT_RUNTIME, "")
    except Exception as error:
        return _fail(args, error, EXIT_RUNTIME, "unexpected error (run with --debug for details): ")


def _errors(
    names: Sequence[tuple[str, str]], *eager: type[BaseException]
) -> tuple[type[BaseException], ...]:
    """``eager`` and the exception classes ``(module, name)`` of the modules imported so far."""
    loaded = [getattr(sys.modules[m], name) for m, name in names if m in sys.modules]
    return (*eager, *loaded)


def lazy(module: str, name: str) -> Handler:
    """The command handler ``name`` of ``module``, imported when the command runs."""

    def handler(settings: Settings, args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(module), name)(settings, args))

    return handler


class CommandParser(argparse.ArgumentParser):
    """A command's parser whose options may come from the command's module (``options``,
    ``(module, function)``): they are added when the command is used, not for every command."""

    options: tuple[str, str] | None = None

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Add the deferred options, then parse as usual."""
        if self.options is not None:
            module, function = self.options
            self.options = None
            getattr(importlib.import_module(module), function)(self)
        return super().parse_known_args(args, namespace)


def configure_logging(debug: bool, command: str) -> None:
    """INFO for the daemon (one line per message), WARNING for one-shot commands, all with --debug.

    aiosmtpd's per-command protocol log (``mail.log``) is shown only with --debug. Alembic's
    plugin set-up lines, logged when it is imported (by the command, after this), never are.
    """
    level = logging.DEBUG if debug else logging.INFO if command == "serve" else logging.WARNING
    logging.basicConfig(level=level, format=LOG_FORMAT)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if not debug:
        logging.getLogger("mail.log").setLevel(logging.WARNING)


def _fail(args: argparse.Namespace, error: BaseException, status: int, prefix: str) -> int:
    if args.debug:
        logging.getLogger("postdesk").exception("%s failed", args.command)
    message = " ".join(str(getattr(error, "orig", None) or error).split())
    print(f"postdesk {args.command}: {prefix}{message}", file=sys.stderr)
    return status


def _version() -> str:
    """The installed version of postdesk."""
    try:
        return importlib.metadata.version("postdesk")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with an example in each command's help."""
    parser = argparse.ArgumentParser(
        prog="postdesk",
        description="An email-first help-desk daemon.",
        epilog="Configuration: --config FILE, $POSTDESK_CONFIG or ./postdesk.toml; see docs/.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--debug", action="store_true", help="verbose logs and tracebacks")
    parser.add_argument("--version", action="version", version=f"postdesk {_version()}")
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="log lines as text or JSON (log.format)"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CommandParser
    )

    def add(
        name: str,
        handler: Handler,
        help_text: str,
        example: str,
        options: tuple[str, str] | None = None,
    ) -> argparse.ArgumentParser:
        sub: CommandParser = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example: {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        sub.options = options
        return sub

    add("serve", cmd_serve, "Run the daemon: SMTP intake, processing, outbox.", "postdesk serve")
    add("init", cmd_init, "Create or upgrade the database schema.", "postdesk init")
    sub = add(
        "ingest",
        cmd_ingest,
        "Feed .eml files, Maildirs or mbox files through the pipeline.",
        "postdesk ingest ~/exported/*.eml ~/Maildir",
    )
    sub.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    sub = add("tickets", cmd_tickets, "List tickets.", "postdesk tickets --status open --json")
    sub.add_argument("--status", choices=["new", "open", "pending", "solved", "closed", "spam"])
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--overdue", action="store_true", help="open tickets with a breached target")
    sub.add_argument("--assignee", metavar="EMAIL", help="one agent's tickets (or 'nobody')")
    sub.add_argument("--priority", metavar="P", help="only tickets of this priority")
    sub.add_argument("--sort", choices=listing.SORT_KEYS, help="order by due, created or updated")
    sub = add(
        "ticket", cmd_ticket, "Show one ticket with its messages.", "postdesk ticket 42 --json"
    )
    sub.add_argument("number", type=int)
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub = add(
        "quarantine",
        cmd_quarantine,
        "List held messages and why; replay them.",
        "postdesk quarantine   |   postdesk quarantine replay 3   |   postdesk quarantine replay --all",
    )
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("action", nargs="?", choices=["replay"])
    sub.add_argument("id", nargs="?", type=int, help="quarantine record to replay")
    sub.add_argument("--all", action="store_true", help="replay every held message")
    sub = add(
        "backup",
        lazy(OPS, "cmd_backup"),
        "Back up the database, spool and attachments while the daemon runs; or --verify one.",
        "postdesk backup /var/backups/postdesk/$(date +%F)   |   postdesk backup --verify DIR",
    )
    sub.add_argument("path", type=Path, metavar="DIR")
    sub.add_argument("--verify", action="store_true", help="check DIR; change nothing")
    sub = add(
        "restore",
        lazy(OPS, "cmd_restore"),
        "Rebuild the data dir and database from a backup (checksums verified first).",
        "postdesk restore /var/backups/postdesk/2026-11-29",
    )
    sub.add_argument("path", type=Path, metavar="DIR")
    sub.add_argument("--force", action="store_true", help="replace a non-empty data dir/database")
    sub = add(
        "status",
        lazy(OPS, "cmd_status"),
        "Show spool, outbox, quarantine, database and worker facts (as /metrics has them).",
        "postdesk status --json",
    )
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub = add(
        "forget",
        lazy(OPS, "cmd_forget"),
        "Erase a person's messages, attachments and contact card; keep tickets as statistics.",
        "postdesk forget carol@example.org --dry-run",
    )
    sub.add_argument("email")
    sub.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    sub = add(
        "report",
        cmd_report,
        "Volume, speed, satisfaction, backlog and spam figures of a date range.",
        "postdesk report --from 2026-01-01 --to 2026-03-31 --by month --html q1.html",
        (REPORTS, "add_arguments"),
    )
    add(
        "train",
        lazy(CLASSIFY, "train"),
        "Train the spam or category model.",
        "postdesk train spam --ham ~/mail/ham --spam ~/mail/spam.mbox   |   "
        "postdesk train category --csv tickets.csv --text subject,body --label queue",
        (CLASSIFY, "train_arguments"),
    )
    add(
        "evaluate",
        lazy(CLASSIFY, "evaluate"),
        "Measure the current spam or category model on labelled data.",
        "postdesk evaluate spam --ham ~/mail/ham --spam ~/mail/spam --json",
        (CLASSIFY, "evaluate_arguments"),
    )
    add(
        "classify",
        lazy(CLASSIFY, "classify_file"),
        "Classify one message with the current models.",
        "postdesk classify message.eml --json --explain",
        (CLASSIFY, "classify_arguments"),
    )
    sub = add(
        "contacts",
        cmd_contacts,
        "List the CRM's contacts, or import them from a CSV or XLSX file.",
        "postdesk contacts --json   |   postdesk contacts import customers.xlsx --region RU",
    )
    sub.add_argument("action", nargs="?", choices=["import"])
    sub.add_argument("file", nargs="?", help="CSV or XLSX file to import")
    sub.add_argument("--region", help="default phone region (else plugins.crm.default_region)")
    sub.add_argument("--json", action="store_true", help="print JSON")
    add(
        "check",
        cmd_check,
        "Validate the config and reach the database and relay.",
        "postdesk check",
    )
    return parser


def cmd_serve(settings: Settings, _args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM or SIGINT."""
    from postdesk.daemon.serve import serve

    return serve(settings)


def cmd_init(settings: Settings, _args: argparse.Namespace) -> int:
    """Create or upgrade the schema."""
    from postdesk.daemon.runtime import open_runtime

    runtime = open_runtime(settings)
    print(f"database ready: {runtime.engine.url.render_as_string(hide_password=True)}")
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    """Spool the given mail and process it now (or let the running ``serve`` do it)."""
    from postdesk.daemon import ingest_report
    from postdesk.daemon.intake import files
    from postdesk.daemon.preflight import serve_running
    from postdesk.daemon.runtime import open_runtime

    runtime = open_runtime(settings)
    ids = files.spool_paths(runtime.spool, args.paths, settings.helpdesk.address)
    if serve_running(settings):
        return ingest_report.handed_to_serve(runtime.spool, ids)
    return ingest_report.report(ids, _drain(runtime), runtime.spool)


def cmd_tickets(settings: Settings, args: argparse.Namespace) -> int:
    """Print the list of tickets."""
    from postdesk.daemon.runtime import open_runtime
    from postdesk.daemon.store import views

    runtime = open_runtime(settings)
    with runtime.factory() as session:
        tickets = views.list_tickets(session, args.status)
        labels = settings.workflow.labels
        rows = [views.ticket_dict(t, settings.helpdesk.tag, False, labels) for t in tickets]
    rows = listing.select_rows(
        rows, overdue=args.overdue, assignee=args.assignee, priority=args.priority, sort=args.sort
    )
    if args.json:
        print(json.dumps(rows, indent=2))
    for row in [] if args.json else rows:
        print(
            f"{row['tag']:<16} {row['status']:<8} {row['priority']:<7} {row['requester']:<32} {row['subject']}"
        )
    return 0


def cmd_ticket(settings: Settings, args: argparse.Namespace) -> int:
    """Print one ticket and its messages."""
    from postdesk.daemon.runtime import open_runtime
    from postdesk.daemon.store import views

    runtime = open_runtime(settings)
    with runtime.factory() as session:
        ticket = views.load_ticket(session, args.number)
        if ticket is None:
            raise UsageError(f"there is no ticket {args.number} (see: postdesk tickets)")
        data = views.ticket_dict(ticket, settings.helpdesk.tag, labels=settings.workflow.labels)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(
        f"{data['tag']} {data['subject']}\nstatus {data['status']}, priority {data['priority']}, "
        f"requester {data['requester']}, assignee {data['assignee'] or '-'}"
    )
    for message in data["messages"]:
        flags = " ".join(f for f in ("internal", "auto") if message[f])
        print(f"\n--- {message['direction']} {message['author']} {message['created_at']} {flags}")
        print(views.shown_text(message))
    return 0


def cmd_quarantine(settings: Settings, args: argparse.Namespace) -> int:
    """List quarantined messages, or replay them through the pipeline."""
    from postdesk.daemon.mail.parse import sender_and_subject
    from postdesk.daemon.runtime import open_runtime
    from postdesk.daemon.store import quarantine, views

    runtime = open_runtime(settings)
    if args.action == "replay":
        return _replay(runtime, args)
    with runtime.factory() as session:
        rows: list[dict[str, Any]] = [
            {
                "id": q.id,
                "reason": q.reason,
                "channel": q.channel,
                "attempts": q.attempts,
                "size": len(q.raw),
                "created_at": views.iso(q.created_at),
                **dict(zip(("from", "subject"), sender_and_subject(q.raw), strict=True)),
            }
            for q in quarantine.held(session)
        ]
    if args.json:
        print(json.dumps(rows, indent=2))
    for row in [] if args.json else rows:
        print(
            f"{row['id']:>5}  {row['created_at'][:19]}  {row['channel']:<10} "
            f"{row['from'] or '-'}  {row['subject'] or '(no subject)'}\n       {row['reason']}"
        )
    if not rows and not args.json:
        print("quarantine is empty")
    return 0


def _replay(runtime: Runtime, args: argparse.Namespace) -> int:
    from postdesk.daemon import ingest_report
    from postdesk.daemon.store import quarantine
    from postdesk.daemon.store.db import transaction

    if args.id is None and not args.all:
        raise UsageError("say which record to replay: quarantine replay ID, or --all")
    with transaction(runtime.factory) as session:
        items = [q for q in quarantine.held(session) if args.all or q.id == args.id]
        if not items:
            raise UsageError(f"no held quarantine record {args.id} (see: postdesk quarantine)")
        for item in items:
            quarantine.replay(session, runtime.spool, item)
    outcomes = _drain(runtime)
    print(f"replayed {len(items)}; " + ingest_report.summary(outcomes))
    return 0


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    """Print or write the report of a date range."""
    from postdesk.daemon.reports import commands as reports
    from postdesk.daemon.runtime import open_database

    return reports.run(settings, open_database(settings), args)


def cmd_contacts(settings: Settings, args: argparse.Namespace) -> int:
    """List contacts, or import a contact file."""
    from postdesk.daemon.runtime import open_runtime
    from postdesk.plugins.crm import commands as contacts

    runtime = open_runtime(settings)
    if args.action == "import":
        if not args.file:
            raise UsageError("say which file to import: contacts import FILE")
        return contacts.import_file(settings, runtime.factory, args.file, args.region)
    return contacts.list_contacts(runtime.factory, args.json)


def cmd_check(settings: Settings, _args: argparse.Namespace) -> int:
    """Check the configuration and every external endpoint."""
    from postdesk.daemon import checks

    results = checks.run_all(settings)
    for line in results.lines:
        print(line)
    if not results.config_ok:
        return EXIT_USAGE
    return 0 if results.ok else EXIT_RUNTIME


def _drain(runtime: Runtime) -> list[Outcome]:
    """Process the spool in this process, sending its mail meanwhile, as ``serve`` would."""
    from postdesk.daemon.outbound.beside import SenderBeside
    from postdesk.daemon.worker import DatabaseHealth, Worker

    plugins = runtime.services.plugins
    sender = SenderBeside(runtime.settings, runtime.factory, on_alert=plugins.alert)
    worker = Worker(
        runtime.services, runtime.factory, runtime.spool, DatabaseHealth(), lambda *_: sender.wake()
    )
    runtime.services.releases.committed = sender.wake  # held mail released: send it now
    journal = plugins.journal
    journal.sweep(runtime.factory, force=True)  # events a killed process left unanswered
    sender.start()
    try:
        outcomes = worker.drain()
    finally:
        sender.finish(OUTBOX_PATIENCE_SECONDS)
    plugins.drain(PLUGIN_DRAIN_SECONDS)  # events fired after the commits
    journal.sweep(runtime.factory, force=True)  # forget the answered ones before exiting
    runtime.spool.flush(SPOOL_FLUSH_SECONDS)  # the settled files deleted (or at the next start)
    return outcomes


if __name__ == "__main__":
    sys.exit(main())
