"""``postdesk check``: validate the configuration and reach every endpoint it names."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiosmtplib

from postdesk.daemon.classify.commands import model_status
from postdesk.daemon.config import ConfigError, Settings
from postdesk.daemon.intake.imap import check_mailboxes
from postdesk.daemon.ops.tls import server_context
from postdesk.daemon.preflight import ensure_data_dir, ensure_smtp_listen, serve_running
from postdesk.daemon.sla.rules import unstaffed_escalations
from postdesk.daemon.store.db import make_engine, ping, session_factory
from postdesk.plugins.host import load_plugins

TIMEOUT_SECONDS = 10.0


@dataclass
class CheckResults:
    """One printable line per check, and whether all passed."""

    lines: list[str] = field(default_factory=list)
    ok: bool = True
    config_ok: bool = True  # False when a configured value itself is wrong (exit 2)

    def record(self, name: str, error: str | None, detail: str = "") -> None:
        """Add the outcome of one check."""
        if error is None:
            self.lines.append(f"ok    {name}{': ' + detail if detail else ''}")
        else:
            self.ok = False
            self.lines.append(f"FAIL  {name}: {error}")

    def note(self, name: str, warning: str) -> None:
        """Add a warning that does not fail the check."""
        self.lines.append(f"note  {name}: {warning}")


def run_all(settings: Settings) -> CheckResults:
    """Run every check and collect the results; a plugin that cannot load raises ConfigError."""
    results = CheckResults()
    results.record("config", None, settings.source)
    host = load_plugins(settings, session_factory(make_engine(settings.database_url)))
    results.record("plugins", None, ", ".join(sorted(host.plugins)) or "none loaded")
    host.close()
    _record_config(results, "data_dir", lambda: ensure_data_dir(settings), str(settings.data_dir))
    if serve_running(settings):
        results.record("smtp", None, f"{settings.smtp.listen} (postdesk serve is running)")
    else:
        _record_config(results, "smtp", lambda: ensure_smtp_listen(settings), settings.smtp.listen)
    results.record("database", _database_error(settings), _safe_url(settings.database_url))
    if settings.outbound.relay:
        results.record("relay", asyncio.run(_relay_error(settings)), settings.outbound.relay)
    else:
        results.record(
            "outbound", None, f"no relay: mail is written to {settings.data_dir / 'outbox-sent'}"
        )
    for name, error, detail in check_mailboxes(settings):
        results.record(name, error, detail)
    if settings.smtp.tls_cert:
        results.record("smtp tls", _tls_error(settings), settings.smtp.tls_cert)
    for name, error, detail in model_status(settings):
        results.record(name, error, detail)
    for warning in unstaffed_escalations(settings):
        results.note("sla", warning)
    return results


def _record_config(
    results: CheckResults, name: str, check: Callable[[], None], detail: str
) -> None:
    """Record a check whose failure is a configuration error (its message names the key)."""
    try:
        check()
    except ConfigError as error:
        results.config_ok = False
        results.record(name, str(error))
    else:
        results.record(name, None, detail)


def _tls_error(settings: Settings) -> str | None:
    try:
        server_context(settings.smtp)
    except ConfigError as error:
        return str(error)
    return None


def _database_error(settings: Settings) -> str | None:
    try:
        ping(make_engine(settings.database_url))
    except Exception as error:
        return " ".join(str(getattr(error, "orig", None) or error).split())[:300]
    return None


async def _relay_error(settings: Settings) -> str | None:
    parts = urlsplit(settings.outbound.relay)
    client = aiosmtplib.SMTP(
        hostname=parts.hostname or "127.0.0.1",
        port=parts.port or (465 if parts.scheme == "smtps" else 25),
        use_tls=parts.scheme == "smtps",
        timeout=TIMEOUT_SECONDS,
    )
    try:
        await client.connect()
        await client.quit()
    except (aiosmtplib.SMTPException, OSError) as error:
        return str(error) or type(error).__name__
    return None


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
