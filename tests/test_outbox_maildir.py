"""Outgoing mail into the Maildir in groups: each file durable before its row is marked sent."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from postdesk.daemon.outbound import maildir
from postdesk.daemon.outbound.sender import OutboxSender
from postdesk.daemon.syncfs import check_written
from tests.test_outbox_sender import Env, drain, env, outbox, queue, wait_until_due

__all__ = ["env"]  # the fixture, shared with the sender's tests


def test_a_group_is_flushed_checked_per_file_then_the_folder_synced_then_marked_sent(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env.outbound(connections=1)  # one claim: the whole group at once
    items = [queue(env, number=number) for number in range(1, 7)]
    new = env.settings.data_dir / "outbox-sent" / "new"
    steps: list[str] = []
    real_flush, real_check = maildir.sync_file_system, maildir.check_written
    real_fsync, real_finish = os.fsync, OutboxSender._finish

    def flush(folder: Path) -> None:
        assert len(list(folder.iterdir())) == len(items), "every file written first"
        steps.append("flush")
        real_flush(folder)

    def check(descriptor: int) -> None:
        steps.append("file")
        real_check(descriptor)

    def fsync(descriptor: int) -> None:
        assert Path(os.readlink(f"/proc/self/fd/{descriptor}")) == new
        steps.append("folder")  # everything renamed by now, nothing marked sent yet
        assert len(list(new.iterdir())) == len(items)
        assert {row.status for row in outbox(env)} == {"pending"}
        real_fsync(descriptor)

    def finish(sender: OutboxSender, *args: Any) -> object:
        steps.append("finish")
        return real_finish(sender, *args)

    monkeypatch.setattr(maildir, "sync_file_system", flush)
    monkeypatch.setattr(maildir, "check_written", check)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(OutboxSender, "_finish", finish)
    assert drain(env) == len(items)
    assert steps == ["flush"] + ["file"] * len(items) + ["folder", "finish"]
    for item in items:
        assert item is not None
        assert (new / maildir.file_name(item.id)).read_bytes() == item.raw
    assert {row.status for row in outbox(env)} == {"sent"}


def test_a_mail_that_cannot_be_written_is_retried_alone(env: Env) -> None:
    env = env.outbound(connections=1)
    items = [queue(env, number=number) for number in range(1, 4)]
    assert all(item is not None for item in items)
    blocked = items[1]
    assert blocked is not None
    tmp = env.settings.data_dir / "outbox-sent" / "tmp"
    tmp.mkdir(parents=True)
    (tmp / f"{maildir.file_name(blocked.id)}.{os.getpid()}").mkdir()  # open() fails on it
    assert drain(env) == 3
    rows = {row.id: row for row in outbox(env)}
    assert [rows[item.id].status for item in items if item] == ["sent", "pending", "sent"]
    assert rows[blocked.id].attempts == 1
    assert "IsADirectoryError" in rows[blocked.id].last_error
    new = env.settings.data_dir / "outbox-sent" / "new"
    assert sorted(p.name for p in new.iterdir()) == [
        maildir.file_name(item.id) for item in items if item and item is not blocked
    ]


def test_a_maildir_that_cannot_be_set_up_retries_the_mails(env: Env) -> None:
    item = queue(env)
    assert item is not None
    env.settings.data_dir.mkdir(parents=True, exist_ok=True)
    (env.settings.data_dir / "outbox-sent").write_bytes(b"")  # a file where the folder goes
    assert drain(env) == 1
    [row] = outbox(env)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "NotADirectoryError" in row.last_error


def test_a_mail_a_reader_picked_up_is_not_written_again(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    assert maildir.deliver(root, [(7, b"first")]) == {7: None}
    name = maildir.file_name(7)
    os.rename(root / "new" / name, root / "cur" / f"{name}:2,S")
    assert maildir.deliver(root, [(7, b"again"), (8, b"other")]) == {7: None, 8: None}
    assert sorted(p.name for p in (root / "new").iterdir()) == [maildir.file_name(8)]
    assert (root / "cur" / f"{name}:2,S").read_bytes() == b"first"


def test_a_failed_sync_in_a_group_keeps_only_that_mail_unsent(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files of a group are flushed together, then checked one by one; the one whose
    pages did not reach the disk stays out of new/ and pending, the others are delivered and
    marked sent."""
    items = [queue(env, number=number) for number in range(1, 9)]
    assert all(item is not None for item in items)
    failing = items[3]
    assert failing is not None
    real_check = maildir.check_written

    def check(descriptor: int) -> None:
        name = Path(os.readlink(f"/proc/self/fd/{descriptor}")).name
        if name.startswith(maildir.file_name(failing.id)):
            raise OSError(errno.EIO, "Input/output error")
        real_check(descriptor)

    monkeypatch.setattr(maildir, "check_written", check)
    assert drain(env) == len(items)
    rows = {row.id: row for row in outbox(env)}
    assert (
        rows[failing.id].status == "pending" and "Input/output error" in rows[failing.id].last_error
    )
    assert {rows[item.id].status for item in items if item is not failing} == {"sent"}
    new = env.settings.data_dir / "outbox-sent" / "new"
    assert sorted(p.name for p in new.iterdir()) == [
        maildir.file_name(item.id) for item in items if item and item is not failing
    ]
    monkeypatch.setattr(maildir, "check_written", real_check)
    wait_until_due()
    assert drain(env) == 1, "the next round writes it"
    assert (new / maildir.file_name(failing.id)).read_bytes() == failing.raw
    assert {row.status for row in outbox(env)} == {"sent"}


def test_a_failed_flush_keeps_the_whole_group_out_and_a_later_one_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write-back error of the file system during the flush cannot be pinned on one file."""
    root = tmp_path / "Maildir"

    def flush(folder: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(maildir, "sync_file_system", flush)
    outcome = maildir.deliver(root, [(1, b"one"), (2, b"two")])
    assert {row_id: getattr(error, "errno", None) for row_id, error in outcome.items()} == {
        1: errno.EIO,
        2: errno.EIO,
    }
    assert list((root / "new").iterdir()) == []
    monkeypatch.undo()
    assert maildir.deliver(root, [(1, b"one"), (2, b"two")]) == {1: None, 2: None}
    assert sorted(p.name for p in (root / "new").iterdir()) == [
        maildir.file_name(1),
        maildir.file_name(2),
    ]
    assert (root / "new" / maildir.file_name(2)).read_bytes() == b"two"


def test_check_written_reports_a_closed_descriptor(tmp_path: Path) -> None:
    """The per-file check is a real system call that reports errors, not a no-op."""
    descriptor = os.open(tmp_path / "mail", os.O_WRONLY | os.O_CREAT)
    os.write(descriptor, b"mail")
    check_written(descriptor)
    os.close(descriptor)
    with pytest.raises(OSError) as caught:
        check_written(descriptor)
    assert caught.value.errno == errno.EBADF
