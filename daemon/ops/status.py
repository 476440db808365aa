"""``postdesk status``: the facts ``/metrics`` and ``/readyz`` serve, printed in the terminal."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import Settings
from postdesk.daemon.intake.spool import Spool
from postdesk.daemon.ops.counters import read_counts
from postdesk.daemon.ops.facts import database_facts, spool_facts, spool_writable
from postdesk.daemon.preflight import serve_running


def gather_status(
    settings: Settings, factory: sessionmaker[Session], spool: Spool
) -> dict[str, Any]:
    """Every fact as one JSON-ready dict; ``database`` is an error text when it does not answer."""
    facts = spool_facts(settings, spool)
    counts = read_counts(settings.data_dir)
    status: dict[str, Any] = {
        "daemon_running": serve_running(settings),
        "spool": {
            "depth": facts.depth,
            "oldest_age_seconds": round(facts.oldest_age_seconds, 1),
            "writable": spool_writable(spool),
        },
        "disk": {"free_bytes": facts.free_bytes, "ok": facts.disk_ok},
        "processed": dict(sorted(counts.outcomes.items())),
        "processing_seconds": {"count": counts.observed, "sum": round(counts.seconds_sum, 3)},
    }
    try:
        found = database_facts(factory)
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
        status["database"] = " ".join(str(getattr(error, "orig", None) or error).split())[:300]
        return status
    status["database"] = "ok"
    status["outbox"] = {
        "pending": found.outbox_pending,
        "retrying": found.outbox_retrying,
        "failed": found.outbox_failed,
    }
    status["quarantine"] = {"held": found.quarantine_held}
    return status


def status_lines(status: dict[str, Any]) -> list[str]:
    """The status as short lines for a terminal."""
    spool, disk = status["spool"], status["disk"]
    processed = ", ".join(f"{n} {what}" for what, n in status["processed"].items()) or "none"
    timing = status["processing_seconds"]
    mean = f", mean {1000 * timing['sum'] / timing['count']:.0f} ms" if timing["count"] else ""
    lines = [
        f"daemon      {'running' if status['daemon_running'] else 'not running'}",
        f"database    {status['database']}",
        f"spool       {spool['depth']} waiting, oldest {spool['oldest_age_seconds']:.0f} s"
        + ("" if spool["writable"] else ", NOT WRITABLE"),
        f"disk        {disk['free_bytes'] / 1e9:.1f} GB free" + ("" if disk["ok"] else ", LOW"),
        f"processed   {processed} (since the daemon started{mean})",
    ]
    if "outbox" in status:
        outbox = status["outbox"]
        lines.append(
            f"outbox      {outbox['pending']} waiting ({outbox['retrying']} retrying), "
            f"{outbox['failed']} failed"
        )
        lines.append(f"quarantine  {status['quarantine']['held']} held")
    return lines
