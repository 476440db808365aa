"""The spool: durable before 250, claimable once, recoverable after a crash."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from postdesk.daemon.intake.spool import Envelope, Spool

ENVELOPE = Envelope("carol@example.org", ("support@example.com",), "smtp", 1.0)


def test_write_claim_done(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = spool.write(b"Subject: 1\r\n\r\none", ENVELOPE)
    second = spool.write(b"Subject: 2\r\n\r\ntwo", ENVELOPE)
    entry = spool.claim()
    assert entry is not None and entry.spool_id == first and entry.raw.endswith(b"one")
    assert entry.envelope == ENVELOPE
    spool.done(entry)
    entry = spool.claim()
    assert entry is not None and entry.spool_id == second
    assert spool.claim() is None
    assert spool.pending() == 1


def test_fsync_failure_raises_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "injected I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="injected"):
        spool.write(b"x", ENVELOPE)
    monkeypatch.undo()
    assert list(tmp_path.rglob("*.msg")) == []


def test_recover_requeues_interrupted_work_counting_the_attempt(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    (tmp_path / "tmp" / "partial.0.msg").write_bytes(b"half")
    spool.write(b"whole", ENVELOPE)
    claimed = spool.claim()
    assert claimed is not None
    restarted = Spool(tmp_path)
    assert restarted.recover() == 1
    assert list((tmp_path / "tmp").iterdir()) == []
    again = restarted.claim()
    assert again is not None and again.spool_id == claimed.spool_id and again.attempts == 1


def test_retry_counts_only_when_asked(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.write(b"m", ENVELOPE)
    entry = spool.claim()
    assert entry is not None
    spool.retry(entry, count_attempt=False)
    entry = spool.claim()
    assert entry is not None and entry.attempts == 0
    spool.retry(entry, count_attempt=True)
    entry = spool.claim()
    assert entry is not None and entry.attempts == 1


def test_a_file_claimed_by_another_process_is_skipped(tmp_path: Path) -> None:
    one, two = Spool(tmp_path), Spool(tmp_path)
    spool_id = one.write(b"m", ENVELOPE)
    assert two.claim() is not None
    assert one.claim() is None, f"{spool_id} must not be claimed twice"


def test_a_settled_message_leaves_the_queue_at_once_and_its_file_soon(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool_ids = [spool.write(f"Subject: {n}\r\n\r\nbody".encode(), ENVELOPE) for n in range(20)]
    for _ in spool_ids:
        entry = spool.claim()
        assert entry is not None
        spool.done(entry)
        assert spool.present({entry.spool_id}) == set()  # gone from new/ and work/ at once
    assert spool.pending() == 0
    assert spool.flush(10)
    assert os.listdir(tmp_path / "done") == [] and os.listdir(tmp_path / "work") == []


def test_files_settled_before_a_crash_are_deleted_at_the_next_start(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.write(b"Subject: 1\r\n\r\none", ENVELOPE)
    entry = spool.claim()
    assert entry is not None
    os.rename(entry.path, tmp_path / "done" / entry.path.name)  # settled, then killed
    restarted = Spool(tmp_path)
    assert restarted.flush(10)
    assert os.listdir(tmp_path / "done") == []
    assert restarted.claim() is None and restarted.recover() == 0


def test_settling_a_message_twice_is_harmless(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.write(b"Subject: 1\r\n\r\none", ENVELOPE)
    entry = spool.claim()
    assert entry is not None
    spool.done(entry)
    spool.done(entry)
    assert spool.flush(10) and os.listdir(tmp_path / "done") == []
