"""The report as plain-text tables: the terminal view and the text part of the report mail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

NONE = "-"


def duration(seconds: float | None) -> str:
    """A duration for people: ``45m``, ``3h 05m``, ``2d 4h``; ``-`` when there is none."""
    if seconds is None:
        return NONE
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def percent(ratio: float | None) -> str:
    """A ratio as a whole percentage, or ``-``."""
    return NONE if ratio is None else f"{ratio * 100:.0f}%"


def number(value: float | None) -> str:
    """A number with up to two decimals, or ``-``."""
    return NONE if value is None else f"{value:g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Aligned columns: the first left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        parts = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)),
        ]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def render_text(report: dict[str, Any]) -> str:
    """Every section of ``report`` as titled text tables."""
    window = report["window"]
    out = [
        f"{report['title']}: {window['from']} to {window['to']} ({window['timezone']}, by {window['by']})",
        "",
    ]
    for title, lines in _sections(report):
        out += [title, *lines, ""]
    return "\n".join(out)


def _sections(report: dict[str, Any]) -> list[tuple[str, list[str]]]:
    volume, speed = report["volume"], report["speed"]
    sat, backlog, spam = report["satisfaction"], report["backlog"], report["spam"]
    totals = volume["totals"]
    periods = [(p["period"], p["created"], p["reopened"], p["solved"]) for p in volume["periods"]]
    periods.append(("total", totals["created"], totals["reopened"], totals["solved"]))
    first, resolution = speed["first_response"], speed["resolution"]
    business = report["sla"]["business_time"]
    return [
        ("VOLUME", table(("period", "created", "reopened", "solved"), periods)),
        ("Created by category", _counts("category", volume["by_category"])),
        ("Created by channel", _counts("channel", volume["by_channel"])),
        (
            "SPEED (wall time)",
            [
                *table(
                    ("measure", "tickets", "median", "p90", "mean"),
                    [
                        _speed_row("first response", first["overall"]),
                        _speed_row("resolution", resolution["overall"]),
                    ],
                ),
                f"unanswered tickets: {first['unanswered']}",
            ],
        ),
        ("First response by agent", _speed_table("agent", first["by_agent"])),
        ("First response by category", _speed_table("category", first["by_category"])),
        ("Resolution by agent (assignee)", _speed_table("agent", resolution["by_agent"])),
        ("Resolution by category", _speed_table("category", resolution["by_category"])),
        (
            f"SLA COMPLIANCE (tickets created in the range, as of {report['sla']['as_of']})",
            _sla_table(report["sla"]),
        ),
        (
            "First response in business time (SLA calendars)",
            _speed_table("policy", _with_total(business["first_response"])),
        ),
        (
            "First response in business time by agent",
            _speed_table("agent", business["first_response"]["by_agent"]),
        ),
        (
            "First response in business time by category",
            _speed_table("category", business["first_response"]["by_category"]),
        ),
        (
            "Resolution in business time (SLA calendars)",
            _speed_table("policy", _with_total(business["resolution"])),
        ),
        (
            "Resolution in business time by agent (assignee)",
            _speed_table("agent", business["resolution"]["by_agent"]),
        ),
        (
            "Resolution in business time by category",
            _speed_table("category", business["resolution"]["by_category"]),
        ),
        (
            "SATISFACTION",
            [
                *table(
                    ("score", "ratings"), [(d["score"], d["count"]) for d in sat["distribution"]]
                ),
                f"average: {number(sat['average'])}   rated: {sat['rated']}   "
                f"requests sent: {sat['requested']}   answered: {sat['answered']}   "
                f"response rate: {percent(sat['response_rate'])}",
            ],
        ),
        ("CSAT by agent (assignee)", _csat_table("agent", sat["by_agent"])),
        ("CSAT by category", _csat_table("category", sat["by_category"])),
        (
            f"BACKLOG at the end of the range: {backlog['open']} open",
            table(("age", "tickets"), [(b["bucket"], b["count"]) for b in backlog["by_age"]]),
        ),
        ("Backlog by assignee", _counts("assignee", backlog["by_assignee"])),
        (
            "SPAM AND QUARANTINE",
            table(
                ("what", "count"),
                [
                    ("spam tickets", spam["spam_tickets"]),
                    ("marked as spam", spam["marked_spam"]),
                    ("quarantined", spam["quarantined"]),
                    ("held in quarantine now", spam["held_now"]),
                ],
            ),
        ),
    ]


def _counts(label: str, counts: dict[str, int]) -> list[str]:
    rows = [(key or "(none)", n) for key, n in counts.items()]
    return table((label, "tickets"), rows) if rows else ["(none)"]


def _speed_row(label: str, row: dict[str, Any]) -> tuple[object, ...]:
    return (
        label,
        row["count"],
        duration(row["median"]),
        duration(row["p90"]),
        duration(row["mean"]),
    )


def _speed_table(label: str, rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(none)"]
    return table(
        (label, "tickets", "median", "p90", "mean"),
        [_speed_row(r["key"] or "(none)", r) for r in rows],
    )


def _csat_table(label: str, rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(none)"]
    return table(
        (label, "ratings", "average"),
        [(r["key"] or "(none)", r["count"], number(r["average"])) for r in rows],
    )


def _sla_table(sla: dict[str, Any]) -> list[str]:
    rows = [*[(p["policy"], p) for p in sla["policies"]], ("total", sla["totals"])]
    if not sla["policies"]:
        return ["(no ticket with an SLA policy)"]
    return table(
        ("policy", "target", "tickets", "met", "breached", "at risk", "open", "compliance"),
        [
            (
                name,
                target.replace("_", " "),
                row["tickets"],
                row[target]["met"],
                row[target]["breached"],
                row[target]["at_risk"],
                row[target]["open"],
                percent(row[target]["compliance"]),
            )
            for name, row in rows
            for target in ("first_response", "resolution")
        ],
    )


def _with_total(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-policy rows and, when there are any, an ``all policies`` row."""
    rows = figures["by_policy"]
    return [*rows, {"key": "all policies", **figures["overall"]}] if rows else []
