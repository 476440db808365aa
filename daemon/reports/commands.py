"""``postdesk report``: the figures of a date range as text tables, JSON or an HTML file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from postdesk.daemon.config import Settings
from postdesk.daemon.outbound.templating import Templates
from postdesk.daemon.reports.build import build_report, mailboxes
from postdesk.daemon.reports.business import policy_calendars
from postdesk.daemon.reports.html import render_html
from postdesk.daemon.reports.periods import GRAINS, make_window, parse_date
from postdesk.daemon.reports.text import render_text
from postdesk.models.schema import utcnow


class ReportUsageError(ValueError):
    """The report was asked for something it cannot do (a bad date or range)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``postdesk report``."""
    parser.add_argument("--from", dest="first", metavar="DATE", help="first day, YYYY-MM-DD")
    parser.add_argument("--to", dest="last", metavar="DATE", help="last day, YYYY-MM-DD")
    parser.add_argument("--by", choices=GRAINS, default="week", help="period of the tables")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON (docs/reports.md)")
    output.add_argument("--html", metavar="FILE", type=Path, help="write the HTML report")


def run(settings: Settings, engine: Engine, args: argparse.Namespace) -> int:
    """Build the report the arguments ask for and print or write it."""
    zone = ZoneInfo(settings.reports.timezone)
    now = utcnow()
    try:
        first = parse_date(args.first) if args.first else None
        last = parse_date(args.last) if args.last else None
        window = make_window(first, last, args.by, zone, now.astimezone(zone).date())
    except ValueError as error:
        raise ReportUsageError(str(error)) from None
    report = build_report(
        engine,
        window,
        f"{settings.helpdesk.name} report",
        now,
        policy_calendars(settings),
        mailboxes(settings),
    )
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.html:
        args.html.write_text(render_html(Templates(settings).environment, report), "utf-8")
        print(f"report written to {args.html}")
    else:
        print(render_text(report), end="")
    return 0
