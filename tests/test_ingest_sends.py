"""``postdesk ingest`` without a running serve sends the mail it commits, as serve would: to the
Maildir, to a real relay, and, when the relay is away, leaves it in the outbox for serve."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support import CUSTOMER, Daemon, SmtpSink, free_port, make_mail, wait_until, write_config

AGENTS = '[[agents]]\nemail = "alice@example.com"\nname = "Alice"\n'


def _mails(folder: Path, count: int) -> Path:
    folder.mkdir()
    for n in range(count):
        sender = f"customer{n}@example.org"
        (folder / f"{n}.eml").write_bytes(make_mail(subject=f"question {n}", sender=sender))
    return folder


def test_ingest_writes_every_acknowledgement_and_notification_to_the_maildir(
    tmp_path: Path, database_url: str
) -> None:
    daemon = Daemon(write_config(tmp_path, database_url, extra=AGENTS), tmp_path)
    try:
        result = daemon.cli("ingest", str(_mails(tmp_path / "mails", 40)))
        assert "40 stored (40 new tickets)" in result.stdout
        rows = daemon.outbox()
        assert len(rows) == 80  # an acknowledgement and a notification per ticket
        assert {row.status for row in rows} == {"sent"}
        written = list((daemon.settings.data_dir / "outbox-sent" / "new").iterdir())
        assert len(written) == 80
        acknowledged = [p for p in written if b"\r\nTo: customer" in p.read_bytes()]
        assert len(acknowledged) == 40
    finally:
        daemon.stop()


def test_ingest_hands_its_mail_to_the_relay(
    tmp_path: Path, database_url: str, sink: SmtpSink
) -> None:
    relay = f"smtp://127.0.0.1:{sink.port}"
    daemon = Daemon(write_config(tmp_path, database_url, relay=relay), tmp_path)
    try:
        daemon.cli("ingest", str(_mails(tmp_path / "mails", 5)))
        assert sorted(m["To"] for _, m in sink.received) == [
            f"customer{n}@example.org" for n in range(5)
        ]
        assert all("[Example #" in str(m["Subject"]) for _, m in sink.received)
        assert {row.status for row in daemon.outbox()} == {"sent"}
    finally:
        daemon.stop()


def test_ingest_with_the_relay_down_leaves_the_mail_for_serve(
    tmp_path: Path, database_url: str, sink: SmtpSink
) -> None:
    port = free_port()  # nothing listens there while ingest runs
    config = write_config(tmp_path, database_url, relay=f"smtp://127.0.0.1:{port}")
    daemon = Daemon(config, tmp_path)
    try:
        started = time.monotonic()
        result = daemon.cli("ingest", str(write_mail(tmp_path)))
        assert "1 stored (1 new tickets)" in result.stdout
        assert time.monotonic() - started < 60
        (row,) = daemon.outbox()
        assert row.status == "pending" and row.attempts == 1 and row.last_error
    finally:
        daemon.stop()
    config.write_text(config.read_text().replace(f":{port}", f":{sink.port}"))
    daemon = Daemon(config, tmp_path)
    try:
        daemon.start()  # serve sends it once its retry is due
        wait_until(lambda: sink.to(CUSTOMER), what="the acknowledgement at the relay")
        assert len(sink.to(CUSTOMER)) == 1
    finally:
        daemon.stop()


def write_mail(tmp_path: Path) -> Path:
    path = tmp_path / "one.eml"
    path.write_bytes(make_mail())
    return path
