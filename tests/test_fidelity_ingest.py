"""``ingest`` reads what people really have: .eml files with an envelope line, mbox files with
attached patches, Maildirs without cur/, plain folders of .eml files (issue 9, item 1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from postdesk.daemon.intake.files import IngestError, read_messages, split_mbox
from postdesk.models.schema import Attachment, Message
from tests.support import Daemon, make_mail, write_config

PATCH_MAIL = b"""From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\r
From: Dana Dev <dana@example.org>\r
To: support@example.com\r
Subject: Fix for the printer driver\r
Message-ID: <patch-1@example.org>\r
MIME-Version: 1.0\r
Content-Type: multipart/mixed; boundary="==sep=="\r
\r
--==sep==\r
Content-Type: text/plain; charset=utf-8\r
\r
Here is the fix we talked about.\r
\r
--==sep==\r
Content-Type: text/x-patch; name="0001-fix.patch"\r
Content-Disposition: attachment; filename="0001-fix.patch"\r
\r
From fc8812aa1bb0c3c0ffee0123456789abcdef0123 Mon Sep 17 00:00:00 2001\r
From: Dana Dev <dana@example.org>\r
Date: Tue, 3 Jan 2023 10:00:00 +0100\r
Subject: [PATCH] fix the driver\r
\r
---\r
 driver.c | 2 +-\r
\r
--==sep==--\r
"""


@pytest.fixture
def offline(tmp_path: Path, sqlite_url: str) -> Iterator[Daemon]:
    """A configured data dir whose daemon is not running."""
    daemon = Daemon(write_config(tmp_path, sqlite_url), tmp_path)
    yield daemon
    daemon.stop()


def test_an_eml_file_is_one_message_even_with_a_patch_inside(tmp_path: Path) -> None:
    path = tmp_path / "patch.eml"
    path.write_bytes(PATCH_MAIL)
    (message,) = list(read_messages(path))
    assert message == PATCH_MAIL.split(b"\n", 1)[1]  # only the envelope line is dropped


def test_mbox_splits_only_at_envelope_lines_outside_open_multiparts(tmp_path: Path) -> None:
    plain = make_mail(subject="second").replace(b"\r\n", b"\n")
    plain = plain.replace(b"Hello,\n", b"Hello,\n>From the start, it failed.\n>>From here too\n")
    path = tmp_path / "archive"
    path.write_bytes(
        PATCH_MAIL.replace(b"\r\n", b"\n")
        + b"\nFrom carol@example.org Mon Jan  1 00:00:00 2024\n"
        + plain
    )
    first, second = list(read_messages(path))
    assert b"[PATCH] fix the driver" in first and b"--==sep==--" in first
    assert first.startswith(b"From: Dana Dev")
    assert b"\nFrom the start, it failed.\n>From here too\n" in second  # mboxrd unescaping
    assert second.startswith(b"From: carol@example.org") and b"Subject: second" in second


def test_a_file_without_an_envelope_line_is_one_message(tmp_path: Path) -> None:
    path = tmp_path / "message.txt"
    path.write_bytes(b"From: someone\n\nbody\nFrom me to you, 2024\n")
    assert list(read_messages(path)) == [path.read_bytes()]


def test_split_mbox_keeps_a_from_line_in_the_middle_of_a_paragraph() -> None:
    data = (
        b"From a@example.org Mon Jan  1 00:00:00 2024\nSubject: x\n\nline\n"
        b"From b Mon Jan  1 00:00:00 2024\n"  # no blank line before: body text (mboxo damage)
    )
    assert len(list(split_mbox(data))) == 1


def test_maildir_with_only_new_and_a_plain_folder_of_eml(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    (maildir / "new").mkdir(parents=True)
    (maildir / "new" / "1.host").write_bytes(make_mail(subject="one"))
    (maildir / "new" / ".hidden").write_bytes(b"not mail")
    assert len(list(read_messages(maildir))) == 1

    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "a.eml").write_bytes(make_mail(subject="a"))
    (folder / "B.EML").write_bytes(b"From x@y Mon Jan  1 00:00:00 2024\n" + make_mail(subject="b"))
    (folder / "notes.txt").write_bytes(b"not mail")
    found = list(read_messages(folder))
    assert len(found) == 2 and all(m.startswith(b"From: ") for m in found)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IngestError, match=r"no \.eml files"):
        list(read_messages(empty))


def test_ingested_patch_mail_is_one_ticket_with_its_raw_bytes(
    offline: Daemon, tmp_path: Path
) -> None:
    path = tmp_path / "patch.eml"
    path.write_bytes(PATCH_MAIL)
    result = offline.cli("ingest", str(path))
    assert "ingested 1 message(s): 1 stored (1 new tickets)" in result.stdout, result.stdout
    with offline._factory() as session:
        (raw,) = session.execute(select(Message.raw).where(Message.direction == "in")).scalars()
        sizes = list(session.execute(select(Attachment.size)).scalars())
    assert raw == PATCH_MAIL.split(b"\n", 1)[1]
    assert sizes and all(size > 0 for size in sizes)
