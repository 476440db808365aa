"""Large messages' raw bytes as files in the blob store (R-36): stored byte for byte through the
real daemon, written once however often the message comes, removed by ``forget``, carried by
backup and restore; rows from before (raw bytes in the column) still read."""

from __future__ import annotations

import email.policy
import hashlib
import io
import os
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from alembic import command
from sqlalchemy import insert, select

from postdesk.daemon.classify.labels import spam_examples
from postdesk.daemon.mail.parse import Attachment as Parsed
from postdesk.daemon.mail.parse import parse_file, parse_message
from postdesk.daemon.store.attachments import blob_path
from postdesk.daemon.store.db import alembic_config, make_engine, session_factory, upgrade_schema
from postdesk.daemon.store.rawfiles import IN_ROW_MAX, message_raw
from postdesk.models.classify import ClassifyLabel
from postdesk.models.schema import Attachment, Message, Ticket
from tests.support import CUSTOMER, HELPDESK, Daemon, make_mail, send, wait_until, write_config

MAX_BYTES = 40_000_000  # the test daemons' smtp.max_message_bytes


def big_daemon(root: Path, database_url: str) -> Daemon:
    """A daemon (not started) that accepts messages up to ``MAX_BYTES``."""
    root.mkdir(exist_ok=True)
    config = write_config(root, database_url)
    text = config.read_text()
    assert "max_message_bytes = 1000000\n" in text
    config.write_text(text.replace("1000000", str(MAX_BYTES), 1))
    return Daemon(config, root)


def large_mail(files: list[bytes], sender: str = CUSTOMER, number: int = 0) -> bytes:
    """A CRLF mail from ``sender`` carrying ``files`` as attachments."""
    mail = EmailMessage()
    mail["From"], mail["To"] = sender, HELPDESK
    mail["Subject"], mail["Message-ID"] = "Large files", f"<raw-file-{number}@example.org>"
    mail.set_content("The files are attached.\n")
    for n, data in enumerate(files):
        mail.add_attachment(
            data, maintype="application", subtype="octet-stream", filename=f"file{n}.bin"
        )
    return mail.as_bytes(policy=email.policy.SMTP)


def blob_files(data_dir: Path) -> dict[str, int]:
    """Every file in the blob store (temporary ones included), name -> size."""
    root = data_dir / "attachments"
    return {path.name: path.stat().st_size for path in root.rglob("*") if path.is_file()}


def stored_rows(daemon: Daemon) -> list[tuple[Message, list[tuple[str, int, str]]]]:
    """Each inbound message with its attachments' (filename, size, sha256)."""
    with daemon._factory() as session:
        messages = session.execute(select(Message).where(Message.direction == "in")).scalars()
        found = []
        for message in messages:
            attachments = session.execute(
                select(Attachment)
                .where(Attachment.message_pk == message.id)
                .order_by(Attachment.id)
            ).scalars()
            found.append((message, [(a.filename, a.size, a.sha256) for a in attachments]))
        return found


def test_parsing_from_a_file_gives_what_parsing_the_bytes_gives() -> None:
    files = [os.urandom(5000), b"%PDF tiny"]
    cases = [
        large_mail(files),
        b"From carol@example.org Mon Jan  1 00:00:00 2024\n" + large_mail(files),
        b"From " + b"x" * 70_000 + b"\nSubject: a long mbox line\n\nbody\n",
        b"Subject: " + b"y" * 40_000 + b"\n\ncut header, rewritten by the pre-scan\n",
        b"no header at all",
        b"",
    ]
    for raw in cases:
        kept: list[Parsed] = []

        def keep(item: Parsed, kept: list[Parsed] = kept) -> Parsed:
            kept.append(item)
            return item

        parsed = parse_file(io.BytesIO(raw), keep=keep)
        assert parsed == parse_message(raw), raw[:40]
        assert kept == list(parsed.attachments)
    assert [item.data for item in parse_file(io.BytesIO(cases[1])).attachments] == files


def test_25_mb_message_is_a_file_equal_to_what_was_sent_written_once(
    tmp_path: Path, database_url: str
) -> None:
    files = [os.urandom(925_000) for _ in range(20)]
    raw = large_mail(files)
    assert 24_000_000 < len(raw) < 26_000_000
    daemon = big_daemon(tmp_path, database_url)
    daemon.start()
    try:
        assert send(daemon.port, raw)[0] == 250
        wait_until(lambda: daemon.inbound_message_ids(), timeout=120, what="the stored message")
        wait_until(lambda: not daemon.spool_files(), what="the spool file settled")
        data_dir = daemon.settings.data_dir
        before = blob_files(data_dir)
        assert send(daemon.port, raw)[0] == 250, "the same message again (a resend, a retry)"
        wait_until(lambda: not daemon.spool_files(), timeout=120, what="the resend processed")
        assert len(daemon.inbound_message_ids()) == 1, "recognised as stored"
        assert blob_files(data_dir) == before, "no second copy, no temporary file left"
        [(message, attachments)] = stored_rows(daemon)
    finally:
        daemon.stop()
    assert message.raw == b"" and message.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert blob_path(data_dir, message.raw_sha256).read_bytes() == raw
    assert message_raw(data_dir, message.raw, message.raw_sha256) == raw
    assert attachments == [
        (f"file{n}.bin", len(data), hashlib.sha256(data).hexdigest())
        for n, data in enumerate(files)
    ]
    for _name, _size, digest in attachments:
        assert hashlib.sha256(blob_path(data_dir, digest).read_bytes()).hexdigest() == digest
    assert set(before) == {message.raw_sha256, *(digest for _n, _s, digest in attachments)}


def test_backup_restore_carry_raw_files_and_forget_removes_them(
    tmp_path: Path, sqlite_url: str
) -> None:
    erased, kept = "erin@example.net", "kim@example.org"
    theirs = large_mail([os.urandom(IN_ROW_MAX)], sender=erased, number=1)
    others = large_mail([os.urandom(IN_ROW_MAX)], sender=kept, number=2)
    small = make_mail(sender=kept, message_id="<small@example.org>")
    daemon = big_daemon(tmp_path, sqlite_url)
    daemon.start()
    try:
        for raw, sender in ((theirs, erased), (others, kept), (small, kept)):
            assert send(daemon.port, raw, sender=sender)[0] == 250
        wait_until(lambda: len(daemon.inbound_message_ids()) == 3, timeout=60, what="stored")
    finally:
        daemon.stop()
    data_dir = daemon.settings.data_dir
    rows = {m.message_id: m for m, _attachments in stored_rows(daemon)}
    assert (
        rows["<small@example.org>"].raw == small and rows["<small@example.org>"].raw_sha256 is None
    )
    files = {
        mid: blob_path(data_dir, rows[mid].raw_sha256 or "")
        for mid in rows
        if mid != "<small@example.org>"
    }
    assert files["<raw-file-1@example.org>"].read_bytes() == theirs

    daemon.cli("backup", str(tmp_path / "backup"))
    restored = big_daemon(
        tmp_path / "restored", f"sqlite:///{tmp_path / 'restored' / 'data' / 'postdesk.db'}"
    )
    assert "restored" in restored.cli("restore", str(tmp_path / "backup")).stdout
    again = {m.message_id: m for m, _attachments in stored_rows(restored)}
    for mid, sent in (
        ("<raw-file-1@example.org>", theirs),
        ("<raw-file-2@example.org>", others),
        ("<small@example.org>", small),
    ):
        row = again[mid]
        assert message_raw(restored.settings.data_dir, row.raw, row.raw_sha256) == sent, mid

    assert "raw mail not shared" in daemon.cli("forget", erased).stdout
    assert not files["<raw-file-1@example.org>"].exists(), "their raw file is gone"
    assert files["<raw-file-2@example.org>"].read_bytes() == others, "another's is kept"
    after = {m.message_id: m for m, _attachments in stored_rows(daemon)}
    assert after["<raw-file-1@example.org>"].raw_sha256 is None


def test_rows_from_before_raw_files_still_read(tmp_path: Path, database_url: str) -> None:
    engine = make_engine(database_url)
    raw = make_mail(subject="stored by an older release")
    with engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, "0010_outbox_auto_index")
        ticket = connection.execute(
            insert(Ticket.__table__).values(number=1, subject="old", requester=CUSTOMER)
        ).inserted_primary_key[0]
        message = connection.execute(
            insert(Message.__table__).values(
                ticket_id=ticket,
                message_id="<old@example.org>",
                direction="in",
                author=CUSTOMER,
                raw=raw,
            )
        ).inserted_primary_key[0]
    upgrade_schema(engine)
    with session_factory(engine)() as session, session.begin():
        session.add(
            ClassifyLabel(
                ticket_id=ticket,
                message_pk=message,
                kind="spam",
                label="ham",
                actor="alice@example.com",
                created_at=datetime.now(UTC),
            )
        )
    with session_factory(engine)() as session:
        examples = list(spam_examples(session, tmp_path))
        row = session.get(Message, message)
        assert row is not None and row.raw_sha256 is None
    engine.dispose()
    assert examples == [(raw, "ham")]
