"""The ``postdesk`` command line (SPEC section 3).

Exit status 2 for usage and configuration errors, 1 for runtime failures, each with one line
on stderr saying what to fix; a traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import exc as sa_exc

from postdesk.daemon import checks
from postdesk.daemon.config import ConfigError, Settings, load_settings
from postdesk.daemon.intake import files
from postdesk.daemon.runtime import Runtime, open_runtime
from postdesk.daemon.serve import AlreadyRunning, serve
from postdesk.daemon.store import quarantine, views
from postdesk.daemon.store.db import transaction
from postdesk.daemon.worker import DatabaseHealth, Outcome, Worker
from postdesk.daemon.workerproc import LOG_FORMAT
from postdesk.plugins.crm import commands as contacts

EXIT_RUNTIME = 1
EXIT_USAGE = 2
PLUGIN_DRAIN_SECONDS = 10.0


class UsageError(Exception):
    """The command was given something it cannot use."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``postdesk`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.debug, args.command)
    try:
        settings = load_settings(args.config)
        return int(args.handler(settings, args))
    except (ConfigError, UsageError, files.IngestError, contacts.ImportFileError) as error:
        return _fail(args, error, EXIT_USAGE, "")
    except AlreadyRunning as error:
        return _fail(args, error, EXIT_RUNTIME, "")
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
        return _fail(
            args, error, EXIT_RUNTIME, "cannot reach the database (check helpdesk.database): "
        )
    except OSError as error:
        return _fail(args, error, EXIT_RUNTIME, "")
    except Exception as error:
        return _fail(args, error, EXIT_RUNTIME, "unexpected error (run with --debug for details): ")


def configure_logging(debug: bool, command: str) -> None:
    """INFO for the daemon (one line per message), WARNING for one-shot commands, all with --debug.

    aiosmtpd's per-command protocol log (``mail.log``) is shown only with --debug.
    """
    level = logging.DEBUG if debug else logging.INFO if command == "serve" else logging.WARNING
    logging.basicConfig(level=level, format=LOG_FORMAT)
    if not debug:
        logging.getLogger("mail.log").setLevel(logging.WARNING)


def _fail(args: argparse.Namespace, error: BaseException, status: int, prefix: str) -> int:
    if args.debug:
        logging.getLogger("postdesk").exception("%s failed", args.command)
    message = " ".join(str(getattr(error, "orig", None) or error).split())
    print(f"postdesk {args.command}: {prefix}{message}", file=sys.stderr)
    return status


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with an example in each command's help."""
    parser = argparse.ArgumentParser(
        prog="postdesk",
        description="An email-first help-desk daemon.",
        epilog="Configuration: --config FILE, $POSTDESK_CONFIG or ./postdesk.toml; see docs/.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--debug", action="store_true", help="verbose logs and tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Callable[..., int], help_text: str, example: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example: {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
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
    sub.add_argument("--status", choices=["new", "open", "pending", "solved", "closed"])
    sub.add_argument("--json", action="store_true", help="print JSON")
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
    return serve(settings)


def cmd_init(settings: Settings, _args: argparse.Namespace) -> int:
    """Create or upgrade the schema."""
    runtime = open_runtime(settings)
    print(f"database ready: {runtime.engine.url.render_as_string(hide_password=True)}")
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    """Spool the given mail and process it now."""
    runtime = open_runtime(settings)
    count = files.spool_paths(runtime.spool, args.paths, settings.helpdesk.address)
    outcomes = _drain(runtime)
    print(ingest_summary(outcomes))
    return 0 if len(outcomes) >= count else EXIT_RUNTIME


def cmd_tickets(settings: Settings, args: argparse.Namespace) -> int:
    """Print the list of tickets."""
    runtime = open_runtime(settings)
    with runtime.factory() as session:
        tickets = views.list_tickets(session, args.status)
        rows = [views.ticket_dict(t, settings.helpdesk.tag, with_messages=False) for t in tickets]
    if args.json:
        print(json.dumps(rows, indent=2))
    for row in [] if args.json else rows:
        print(
            f"{row['tag']:<16} {row['status']:<8} {row['priority']:<7} {row['requester']:<32} {row['subject']}"
        )
    return 0


def cmd_ticket(settings: Settings, args: argparse.Namespace) -> int:
    """Print one ticket and its messages."""
    runtime = open_runtime(settings)
    with runtime.factory() as session:
        ticket = views.load_ticket(session, args.number)
        if ticket is None:
            raise UsageError(f"there is no ticket {args.number} (see: postdesk tickets)")
        data = views.ticket_dict(ticket, settings.helpdesk.tag)
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
        print(message["text"].rstrip())
    return 0


def cmd_quarantine(settings: Settings, args: argparse.Namespace) -> int:
    """List quarantined messages, or replay them through the pipeline."""
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
                "created_at": q.created_at.isoformat(),
            }
            for q in quarantine.held(session)
        ]
    if args.json:
        print(json.dumps(rows, indent=2))
    for row in [] if args.json else rows:
        print(f"{row['id']:>5}  {row['created_at'][:19]}  {row['channel']:<10} {row['reason']}")
    if not rows and not args.json:
        print("quarantine is empty")
    return 0


def _replay(runtime: Runtime, args: argparse.Namespace) -> int:
    if args.id is None and not args.all:
        raise UsageError("say which record to replay: quarantine replay ID, or --all")
    with transaction(runtime.factory) as session:
        items = [q for q in quarantine.held(session) if args.all or q.id == args.id]
        if not items:
            raise UsageError(f"no held quarantine record {args.id} (see: postdesk quarantine)")
        for item in items:
            quarantine.replay(session, runtime.spool, item)
    outcomes = _drain(runtime)
    print(f"replayed {len(items)}; " + ingest_summary(outcomes))
    return 0


def cmd_contacts(settings: Settings, args: argparse.Namespace) -> int:
    """List contacts, or import a contact file."""
    runtime = open_runtime(settings)
    if args.action == "import":
        if not args.file:
            raise UsageError("say which file to import: contacts import FILE")
        return contacts.import_file(settings, runtime.factory, args.file, args.region)
    return contacts.list_contacts(runtime.factory, args.json)


def cmd_check(settings: Settings, _args: argparse.Namespace) -> int:
    """Check the configuration and every external endpoint."""
    results = checks.run_all(settings)
    for line in results.lines:
        print(line)
    return 0 if results.ok else EXIT_RUNTIME


def _drain(runtime: Runtime) -> list[Outcome]:
    worker = Worker(runtime.services, runtime.factory, runtime.spool, DatabaseHealth())
    outcomes = worker.drain()
    runtime.services.plugins.drain(PLUGIN_DRAIN_SECONDS)  # events fired after the commits
    return outcomes


def ingest_summary(outcomes: list[Outcome]) -> str:
    """One line: how many messages ended how."""
    counts = Counter(o.disposition for o in outcomes)
    created = sum(1 for o in outcomes if o.created)
    parts = [f"{counts.pop('stored', 0)} stored ({created} new tickets)"]
    parts += [f"{n} {kind}" for kind, n in sorted(counts.items())]
    return f"ingested {len(outcomes)} message(s): " + ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())

