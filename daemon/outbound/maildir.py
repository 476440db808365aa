"""Outgoing mail written into a Maildir, a group of mails at a time.

Each mail is named after its outbox row id, so writing it again after a crash replaces the file
instead of adding a second one; a mail a reader already moved to ``cur/`` is not written again.
A group costs two flushes, in the calling thread (:mod:`postdesk.daemon.syncfs`): every file
is written into ``tmp/``, then one ``syncfs`` puts them all on stable storage, each file is
checked for a write-back error of its own and renamed into ``new/``, and the folder is synced.
Only then is a mail reported delivered, so the caller marks a row sent only once its file is
durable; a file whose check failed is not renamed, and only its mail is reported failed (a
failed flush of the file system fails every mail of the group).

An fsync per file cost ~0.07 ms of CPU per mail from a pool of 32 threads (each also rewrites
the file's inode block and ``tmp/`` and asks the disk for a cache flush); one ``syncfs`` and a
check per file cost ~0.003 ms and took a quarter of the wall time (3,000 files, 4.5 KB each).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from pathlib import Path

from postdesk.daemon.syncfs import check_written, sync_file_system

SUFFIX = ".postdesk.eml"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def file_name(row_id: int) -> str:
    """The name of the file of outbox row ``row_id`` (the same on every attempt)."""
    return f"{row_id:010d}{SUFFIX}"


def deliver(root: Path, mails: Sequence[tuple[int, bytes]]) -> dict[int, OSError | None]:
    """Write ``(row id, raw bytes)`` mails into the Maildir at ``root``, durably.

    Returns, per row id, None once its file is on stable storage, or the error that kept it out
    (a Maildir that cannot be set up, a failed flush or a failed sync of ``new/`` fails every
    mail of the group).
    """
    try:
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        picked_up = sorted(os.listdir(root / "cur"))  # a reader renames a file "<name>:2,<flags>"
    except OSError as error:
        return {row_id: error for row_id, _ in mails}
    outcome: dict[int, OSError | None] = {}
    written: list[tuple[int, Path, int]] = []
    tag = f".{os.getpid()}"
    try:
        for row_id, raw in mails:
            name = file_name(row_id)
            position = bisect.bisect_left(picked_up, name)
            if position < len(picked_up) and picked_up[position].startswith(name):
                outcome[row_id] = None  # delivered before, and already picked up
                continue
            tmp = root / "tmp" / f"{name}{tag}"
            try:
                written.append((row_id, tmp, _write(tmp, raw)))
            except OSError as error:
                outcome[row_id] = error
        flush_error = _flush(root / "tmp") if written else None
        for row_id, tmp, descriptor in written:
            target = root / "new" / tmp.stem
            outcome[row_id] = flush_error or _check_and_move(tmp, descriptor, target)
    finally:
        for _row_id, _tmp, descriptor in written:
            os.close(descriptor)
    renamed = [row_id for row_id, _tmp, _descriptor in written if outcome[row_id] is None]
    if renamed:
        try:
            _sync_folder(root / "new")
        except OSError as error:
            outcome.update(dict.fromkeys(renamed, error))
    return outcome


def _write(path: Path, raw: bytes) -> int:
    """Create (or truncate) ``path`` holding ``raw``; returns the open descriptor."""
    descriptor = os.open(path, _CREATE, 0o666)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(descriptor, view) :]
    except OSError:
        os.close(descriptor)
        raise
    return descriptor


def _flush(folder: Path) -> OSError | None:
    """Put the files written in ``folder`` (and the rest of its file system) on stable storage;
    the error that may have kept them off, if any."""
    try:
        sync_file_system(folder)
    except OSError as error:
        return error
    return None


def _check_and_move(tmp: Path, descriptor: int, target: Path) -> OSError | None:
    """Move one flushed file to ``target`` unless its pages failed to reach the disk; the
    error that kept it out, if any."""
    try:
        check_written(descriptor)
        os.replace(tmp, target)
    except OSError as error:
        return error
    return None


def _sync_folder(folder: Path) -> None:
    """Make the entries of ``folder`` durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
