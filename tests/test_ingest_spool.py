"""``postdesk ingest`` spools its messages in groups: one sync of the file system per group,
each file complete on disk before it appears in ``new/``."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from postdesk.daemon.intake import files, spool
from postdesk.daemon.intake.spool import Spool
from postdesk.daemon.syncfs import sync_file_system


def _eml_folder(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "mail"
    folder.mkdir()
    for number in range(count):
        (folder / f"{number:03d}.eml").write_bytes(
            f"From: c{number}@example.org\r\nSubject: {number}\r\n\r\nbody {number}\r\n".encode()
        )
    return folder


def test_a_group_costs_one_sync_of_the_file_system_and_one_of_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = Spool(tmp_path / "spool")
    folder = _eml_folder(tmp_path, 5)
    steps: list[str] = []
    real_fsync = os.fsync

    def sync(folder: Path) -> None:  # every file written and closed, none in new/ yet
        assert folder == queue.tmp
        assert len(list(queue.tmp.iterdir())) == 5 and list(queue.new.iterdir()) == []
        steps.append("file system")
        sync_file_system(folder)

    def fsync(descriptor: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{descriptor}"))
        steps.append("new/" if path == queue.new else f"file {path.name}")
        real_fsync(descriptor)

    monkeypatch.setattr(spool, "sync_file_system", sync)
    monkeypatch.setattr(os, "fsync", fsync)
    ids = files.spool_paths(queue, [folder], "support@example.com")
    assert steps == ["file system", "new/"]
    assert len(ids) == 5 and list(queue.tmp.iterdir()) == []
    claimed = [queue.claim() for _ in ids]
    assert [entry.spool_id for entry in claimed if entry] == ids  # in order, each once
    assert [entry.raw for entry in claimed if entry] == [
        path.read_bytes() for path in sorted(folder.iterdir())
    ]
    assert all(entry and entry.envelope.channel == "ingest" for entry in claimed)


def test_groups_are_spool_group_messages_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = Spool(tmp_path / "spool")
    folder = _eml_folder(tmp_path, 7)
    groups: list[int] = []

    def sync(folder: Path) -> None:
        groups.append(len(list(folder.iterdir())))
        sync_file_system(folder)

    monkeypatch.setattr(files, "SPOOL_GROUP", 3)
    monkeypatch.setattr(spool, "sync_file_system", sync)
    assert len(files.spool_paths(queue, [folder], "support@example.com")) == 7
    assert groups == [3, 3, 1]
    assert len(list(queue.new.iterdir())) == 7


def test_a_failed_sync_raises_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = Spool(tmp_path / "spool")
    folder = _eml_folder(tmp_path, 3)

    def broken(folder: Path) -> None:
        raise OSError(errno.EIO, "injected I/O error")

    monkeypatch.setattr(spool, "sync_file_system", broken)
    with pytest.raises(OSError, match="injected"):
        files.spool_paths(queue, [folder], "support@example.com")
    assert list(queue.tmp.iterdir()) == [] and list(queue.new.iterdir()) == []


def test_sync_file_system_flushes_a_real_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"data")
    sync_file_system(tmp_path)  # no error on a real file system
    with pytest.raises(OSError):
        sync_file_system(tmp_path / "missing")


def test_a_group_cut_short_by_an_unreadable_path_leaves_nothing_behind(tmp_path: Path) -> None:
    queue = Spool(tmp_path / "spool")
    folder = _eml_folder(tmp_path, 2)
    with pytest.raises(files.IngestError, match="does not exist"):
        files.spool_paths(queue, [folder, tmp_path / "missing.mbox"], "support@example.com")
    assert list(queue.tmp.iterdir()) == [] and list(queue.new.iterdir()) == []
