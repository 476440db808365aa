"""The weekly report mail: queued once per week through the outbox, HTML with a text part
carrying the same numbers, and sent by the real daemon to the configured list."""

from __future__ import annotations

import email
import email.policy
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

from sqlalchemy import select

from postdesk.daemon.agents.tokens import Tokens
from postdesk.daemon.config import load_settings
from postdesk.daemon.outbound.templating import Templates
from postdesk.daemon.reports.mail import KIND, queue_weekly
from postdesk.daemon.services import Services
from postdesk.daemon.store.db import make_engine, session_factory
from postdesk.models.schema import KeyValue, OutboxItem
from tests.reportdata import AGENTS_TOML, build_fixture
from tests.support import Daemon, SmtpSink, wait_until, write_config

LEAD, BOSS = "lead@example.com", "boss@example.com"
WEEKLY = f'weekly_to = ["{LEAD}", "Boss <{BOSS}>"]\n'


class Rows(HTMLParser):
    """Every table row of a page as its cells' text; and all text outside tags."""

    def __init__(self) -> None:
        """Start empty."""
        super().__init__()
        self.rows: list[list[str]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open rows and cells."""
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        """Close a cell into its row."""
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        """Collect text."""
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parts(raw: bytes) -> tuple[EmailMessage, str, str]:
    """The mail, its text/plain and its text/html part."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return message, text.get_content().replace("\r\n", "\n"), html.get_content()


def test_weekly_mail_is_queued_once_and_its_text_carries_the_numbers(
    tmp_path: Path, database_url: str
) -> None:
    build_fixture(database_url)
    config = write_config(tmp_path, database_url, extra=AGENTS_TOML + WEEKLY)
    settings = load_settings(str(config), environ={})
    tuesday = datetime(2026, 11, 3, 9, tzinfo=UTC)  # the week before: Oct 26 - Nov 1 (Berlin)
    services = Services(
        settings=settings,
        tokens=Tokens(b"secret", settings.helpdesk.domain),
        templates=Templates(settings),
        clock=lambda: tuesday,
    )
    engine = make_engine(settings.database_url)
    factory = session_factory(engine)
    try:
        assert queue_weekly(services, engine, factory) is True
        assert queue_weekly(services, engine, factory) is False  # same week: nothing more
        with factory() as session:
            rows = (
                session.execute(select(OutboxItem).where(OutboxItem.kind == KIND)).scalars().all()
            )
            marker = session.get(KeyValue, "reports.weekly:2026-10-26")
    finally:
        engine.dispose()
    assert len(rows) == 1 and marker is not None and marker.value == rows[0].message_id
    assert rows[0].recipients == f'["{LEAD}", "{BOSS}"]' and rows[0].ticket_id is None
    message, text, html = parts(rows[0].raw)
    assert message["Subject"] == "Example Support: weekly report 2026-10-26 to 2026-11-01"
    assert message["Auto-Submitted"] == "auto-replied"
    assert "Example Support weekly report: 2026-10-26 to 2026-11-01 (Europe/Berlin, by day)" in text
    # The week of the fixture: T3 and T4 created, T2 reopened, T4 solved after 2 days; T1
    # (asked the week before) rated 5 and T4 (asked this week) 2; the backlog is that of the
    # fixture's end.
    assert "2026-10-27        1         1       0" in text
    assert "first response        1   1d 0h  1d 0h  1d 0h" in text
    assert "average: 3.5   rated: 2   requests sent: 1   answered: 1   response rate: 100%" in text
    assert "BACKLOG at the end of the range: 4 open" in text

    page = Rows()
    page.feed(html)
    text_rows = [[c for c in line.strip().split("  ") if c.strip()] for line in text.splitlines()]
    text_rows = [[c.strip() for c in row] for row in text_rows]
    table_rows = [row for row in page.rows if row]
    assert len(table_rows) > 40
    missing = [row for row in table_rows if row not in text_rows]
    assert missing == [], "every row of the HTML tables is in the text part"
    assert "<svg" in html and "Content-Security-Policy" in html


def test_serve_mails_the_weekly_report_once(tmp_path: Path, sqlite_url: str) -> None:
    sink = SmtpSink()
    sink.start()
    config = write_config(
        tmp_path, sqlite_url, relay=f"smtp://127.0.0.1:{sink.port}", extra=f"[reports]\n{WEEKLY}"
    )
    daemon = Daemon(config, tmp_path)
    try:
        daemon.start()
        (mail,) = wait_until(lambda: sink.to(LEAD), timeout=30, what="the weekly report mail")
        assert sink.to(BOSS) == [mail]
        assert "weekly report" in mail["Subject"]
        assert mail.get_body(("plain",)) is not None and mail.get_body(("html",)) is not None
        assert daemon.stop() == 0
        daemon = Daemon(config, tmp_path)
        daemon.start()
        wait_until(lambda: "postdesk serving" in daemon.log(), what="the second start")
        time.sleep(2)  # the scheduler checks at start; a second mail would be relayed by now
        assert len(sink.to(LEAD)) == 1
    finally:
        daemon.stop()
        sink.stop()
