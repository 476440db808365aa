"""The HTML report: one self-contained page (inline CSS and SVG), for a browser, phone or print.

:func:`report_page` is the one call the HTTP listener's ``/reports`` needs: settings, engine and
a date range in, the page out.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup
from sqlalchemy import Engine

from postdesk.daemon.config import Settings
from postdesk.daemon.outbound.templating import Templates
from postdesk.daemon.reports.build import build_report, mailboxes
from postdesk.daemon.reports.business import policy_calendars
from postdesk.daemon.reports.charts import Series, bar_chart
from postdesk.daemon.reports.periods import make_window
from postdesk.daemon.reports.text import duration, number, percent
from postdesk.models.schema import utcnow

PAGE_TEMPLATE = "reports/report.html.j2"


def report_page(
    settings: Settings,
    engine: Engine,
    first: date | None = None,
    last: date | None = None,
    by: str = "week",
) -> str:
    """The HTML report for local dates ``first``..``last`` (default: the last 28 days)."""
    zone = ZoneInfo(settings.reports.timezone)
    now = utcnow()
    window = make_window(first, last, by, zone, now.astimezone(zone).date())
    report = build_report(
        engine,
        window,
        f"{settings.helpdesk.name} report",
        now,
        policy_calendars(settings),
        mailboxes(settings),
    )
    return render_html(Templates(settings).environment, report)


def render_html(environment: jinja2.Environment, report: dict[str, Any]) -> str:
    """``report`` rendered by ``reports/report.html.j2`` with its charts."""
    template = environment.get_template(PAGE_TEMPLATE)
    return template.render(html_context(report))


def html_context(report: dict[str, Any]) -> dict[str, Any]:
    """What the report templates are given: the figures, the charts and the formatters."""
    return {
        "report": report,
        "charts": charts(report),
        "duration": duration,
        "percent": percent,
        "number": number,
    }


def charts(report: dict[str, Any]) -> dict[str, Any]:
    """Every chart of the page, by name."""
    volume, speed = report["volume"], report["speed"]
    periods = volume["periods"]
    labels = [_short_label(p["period"]) for p in periods]
    first, resolution = speed["first_response"]["histogram"], speed["resolution"]["histogram"]
    sat, backlog = report["satisfaction"], report["backlog"]
    return {
        "volume": bar_chart(
            "chart-volume",
            "Tickets per period",
            labels,
            [
                Series("created", "s1", [p["created"] for p in periods]),
                Series("solved", "s2", [p["solved"] for p in periods]),
                Series("reopened", "s3", [p["reopened"] for p in periods]),
            ],
        ),
        "speed": bar_chart(
            "chart-speed",
            "Response and resolution times",
            [b["bucket"] for b in first],
            [
                Series("first response", "s1", [b["count"] for b in first]),
                Series("resolution", "s2", [b["count"] for b in resolution]),
            ],
        ),
        "csat": bar_chart(
            "chart-csat",
            "CSAT ratings",
            [str(d["score"]) for d in sat["distribution"]],
            [Series("ratings", "s2", [d["count"] for d in sat["distribution"]])],
        ),
        "sla": sla_chart(report["sla"]),
        "backlog": bar_chart(
            "chart-backlog",
            "Open tickets by age",
            [b["bucket"] for b in backlog["by_age"]],
            [Series("open tickets", "s3", [b["count"] for b in backlog["by_age"]])],
        ),
    }


def sla_chart(sla: dict[str, Any]) -> Markup:
    """Met, breached and at-risk targets per policy: first response and resolution side by side."""
    bars = [
        (f"{p['policy']} {short}", p[target])
        for p in sla["policies"]
        for target, short in (("first_response", "1st"), ("resolution", "res"))
    ]
    return bar_chart(
        "chart-sla",
        "SLA compliance per policy",
        [label for label, _ in bars],
        [
            Series(name, css, [counts[state] for _, counts in bars])
            for name, css, state in (
                ("met", "s2", "met"),
                ("breached", "s3", "breached"),
                ("at risk", "s1", "at_risk"),
            )
        ],
    )


def _short_label(period: str) -> str:
    """``10-19`` for a day, ``W43`` for a week, ``2026-10`` for a month: room on a phone."""
    return period[5:] if len(period) in (8, 10) else period
