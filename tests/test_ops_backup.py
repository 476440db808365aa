"""Backup and restore against a real daemon taking mail over SMTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.conftest import fresh_postgres_database
from tests.support import CUSTOMER, HELPDESK, Daemon, make_mail, wait_until, write_config

SENDERS = 4
PER_SENDER = 75


@pytest.fixture
def second_database_url(
    database_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """An empty database of the same kind as ``database_url``, for the restored daemon."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'data' / 'postdesk.db'}"
        return
    yield from fresh_postgres_database(request.getfixturevalue("postgres_server"))


def mail_with_attachment(number: int) -> tuple[bytes, bytes]:
    """A message with a unique Message-ID and (every third one) a unique binary attachment."""
    raw = make_mail(subject=f"request {number}", message_id=f"<m{number}@example.org>")
    if number % 3:
        return raw, b""
    message = EmailMessage()
    message["From"], message["To"] = CUSTOMER, HELPDESK
    message["Subject"], message["Message-ID"] = f"request {number}", f"<m{number}@example.org>"
    message.set_content(f"see the attached log, number {number}\n")
    payload = os.urandom(3000) + number.to_bytes(4, "big")
    message.add_attachment(
        payload, maintype="application", subtype="octet-stream", filename="log.bin"
    )
    return message.as_bytes(), payload


class Senders:
    """Threads sending mail over real SMTP sessions, recording when each 250 came back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted: dict[str, float] = {}
        self.payloads: dict[str, bytes] = {}
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(SENDERS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(120)
        assert not self.errors, self.errors

    def _run(self, sender: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as client:
                for index in range(PER_SENDER):
                    number = sender * PER_SENDER + index
                    raw, payload = mail_with_attachment(number)
                    refused = client.sendmail(CUSTOMER, [HELPDESK], raw)
                    assert not refused
                    self.accepted[f"<m{number}@example.org>"] = time.monotonic()
                    if payload:
                        self.payloads[f"<m{number}@example.org>"] = payload
        except BaseException as error:
            self.errors.append(error)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_backup_under_load_restores_every_accepted_message_once(
    tmp_path: Path, database_url: str, second_database_url: str
) -> None:
    daemon = Daemon(write_config(tmp_path, database_url), tmp_path)
    daemon.start()
    senders = Senders(daemon.port)
    try:
        senders.start()
        wait_until(lambda: len(senders.accepted) >= 100, timeout=60, what="100 accepted mails")
        wait_until(daemon.tickets, timeout=60, what="the first tickets committed")
        began = time.monotonic()
        backup_dir = tmp_path / "backup"
        result = daemon.cli("backup", str(backup_dir))
        senders.join()
    finally:
        daemon.stop()
    before = {mid for mid, at in senders.accepted.items() if at < began}
    assert len(before) >= 100, result.stdout
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["schema_revision"] and manifest["counts"]["tickets"] > 0

    restored_root = tmp_path / "restored"
    restored_root.mkdir(exist_ok=True)
    restored = Daemon(write_config(restored_root, second_database_url), restored_root)
    out = restored.cli("restore", str(backup_dir)).stdout
    assert "restored" in out
    restored.start()
    try:
        wait_until(lambda: not restored.spool_files(), timeout=120, what="restored spool drained")
        stored = Counter(restored.inbound_message_ids())
    finally:
        restored.stop()
    missing = sorted(before - set(stored))
    assert not missing, f"{len(missing)} accepted before the backup are lost: {missing[:5]}"
    twice = [mid for mid, n in stored.items() if n > 1]
    assert not twice, f"stored more than once: {twice[:5]}"
    blobs = restored.settings.data_dir / "attachments"
    for mid in before & set(senders.payloads):
        payload = senders.payloads[mid]
        digest = hashlib.sha256(payload).hexdigest()
        assert (blobs / digest[:2] / digest[2:4] / digest).read_bytes() == payload, mid


def test_corrupted_backup_is_refused_naming_the_file(tmp_path: Path, sqlite_url: str) -> None:
    daemon = Daemon(write_config(tmp_path, sqlite_url), tmp_path)
    mails = tmp_path / "mails"
    mails.mkdir()
    raw, payload = mail_with_attachment(3)
    (mails / "a.eml").write_bytes(raw)
    daemon.cli("ingest", str(mails / "a.eml"))
    backup_dir = tmp_path / "backup"
    daemon.cli("backup", str(backup_dir))
    assert "is intact" in daemon.cli("backup", "--verify", str(backup_dir)).stdout
    digest = hashlib.sha256(payload).hexdigest()
    blob = backup_dir / "attachments" / digest[:2] / digest[2:4] / digest
    damaged = bytearray(blob.read_bytes())
    damaged[100] ^= 0xFF
    blob.write_bytes(bytes(damaged))

    verified = daemon.cli("backup", "--verify", str(backup_dir), check=False)
    assert verified.returncode == 1
    assert str(blob) in verified.stderr and "corrupted" in verified.stderr

    restored_root = tmp_path / "restored"
    restored_root.mkdir()
    restored = Daemon(
        write_config(restored_root, f"sqlite:///{restored_root / 'data' / 'postdesk.db'}"),
        restored_root,
    )
    refused = restored.cli("restore", str(backup_dir), check=False)
    assert refused.returncode == 1 and str(blob) in refused.stderr
    assert not (restored_root / "data" / "postdesk.db").exists()
    daemon.stop()
    restored.stop()


def test_restore_refuses_a_non_empty_data_dir_unless_forced(
    tmp_path: Path, sqlite_url: str
) -> None:
    daemon = Daemon(write_config(tmp_path, sqlite_url), tmp_path)
    daemon.cli("init")
    backup_dir = tmp_path / "backup"
    daemon.cli("backup", str(backup_dir))
    refused = daemon.cli("restore", str(backup_dir), check=False)
    assert refused.returncode == 2 and "not empty" in refused.stderr and "--force" in refused.stderr
    assert "restored" in daemon.cli("restore", "--force", str(backup_dir)).stdout
    again = daemon.cli("backup", str(backup_dir), check=False)
    assert again.returncode == 2 and "must be absent or an empty folder" in again.stderr
    daemon.stop()


@pytest.mark.postgres
def test_postgres_backup_names_the_missing_or_old_client_tool(
    tmp_path: Path, postgres_url: str
) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    daemon = Daemon(write_config(tmp_path, postgres_url), tmp_path, env={"PATH": str(tools)})
    daemon.cli("init")
    missing = daemon.cli("backup", str(tmp_path / "b1"), check=False)
    assert missing.returncode == 1
    assert "pg_dump not found on PATH" in missing.stderr and "postgresql-client-" in missing.stderr
    # An old pg_dump cannot read a newer server: refused before it runs, with what to install.
    fake = tools / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    fake.chmod(0o755)
    old = daemon.cli("backup", str(tmp_path / "b2"), check=False)
    assert old.returncode == 1 and "is version 9, older than the PostgreSQL" in old.stderr
    assert not (tmp_path / "b2").exists(), "a failed backup leaves nothing behind"
    daemon.stop()
