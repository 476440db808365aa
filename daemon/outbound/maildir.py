"""Outgoing mail written into a Maildir, a group of mails at a time.

Each mail is named after its outbox row id, so writing it again after a crash replaces the file
instead of adding a second one; a mail a reader already moved to ``cur/`` is not written again.
A group costs one fsync per file and one of ``new/``: every file is written first, then the files
are synced concurrently, ``SYNCS_IN_FLIGHT`` at a time (the file system commits the syncs that
wait together in one journal commit, instead of one commit per file), then the synced files are
renamed into ``new/`` and the folder is synced once. Only then is a mail reported delivered, so
the caller marks a row sent only once its file is durable; a file whose sync failed is not
renamed, and only its mail is reported failed.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

SUFFIX = ".postdesk.eml"
# Files of a group synced at the same time. On a disk other programs also sync to, 32 syncs in
# flight wrote a 3,000-mail backlog ~1.5x faster than 4 writers syncing one file after another
# (bench/bench_outbox_tail.py); more showed no further gain. The threads start when first used.
SYNCS_IN_FLIGHT = 32
_SYNCERS = ThreadPoolExecutor(SYNCS_IN_FLIGHT, thread_name_prefix="maildir-sync")


def file_name(row_id: int) -> str:
    """The name of the file of outbox row ``row_id`` (the same on every attempt)."""
    return f"{row_id:010d}{SUFFIX}"


def deliver(root: Path, mails: Sequence[tuple[int, bytes]]) -> dict[int, OSError | None]:
    """Write ``(row id, raw bytes)`` mails into the Maildir at ``root``, durably.

    Returns, per row id, None once its file is on stable storage, or the error that kept it out
    (a Maildir that cannot be set up or a failed sync of ``new/`` fails every mail of the group).
    """
    try:
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        picked_up = sorted(os.listdir(root / "cur"))  # a reader renames a file "<name>:2,<flags>"
    except OSError as error:
        return {row_id: error for row_id, _ in mails}
    outcome: dict[int, OSError | None] = {}
    written: list[tuple[int, Path, BinaryIO]] = []
    for row_id, raw in mails:
        name = file_name(row_id)
        position = bisect.bisect_left(picked_up, name)
        if position < len(picked_up) and picked_up[position].startswith(name):
            outcome[row_id] = None  # delivered before, and already picked up
            continue
        tmp = root / "tmp" / f"{name}.{os.getpid()}"
        try:
            handle = tmp.open("wb")
        except OSError as error:
            outcome[row_id] = error
            continue
        try:
            handle.write(raw)
            handle.flush()
        except OSError as error:
            handle.close()
            outcome[row_id] = error
            continue
        written.append((row_id, tmp, handle))
    renamed = _sync_and_rename(root, written, outcome)
    if renamed:
        try:
            _sync_folder(root / "new")
        except OSError as error:
            outcome.update(dict.fromkeys(renamed, error))
    return outcome


def _sync_and_rename(
    root: Path, written: list[tuple[int, Path, BinaryIO]], outcome: dict[int, OSError | None]
) -> list[int]:
    """Sync the written files (concurrently when there are several), then move each synced
    one into ``new/``; returns the ids moved."""
    handles = [handle for _row_id, _tmp, handle in written]
    synced = _SYNCERS.map(_sync, handles) if len(handles) > 1 else map(_sync, handles)
    renamed: list[int] = []
    for (row_id, tmp, _handle), failure in zip(written, list(synced), strict=True):
        try:
            if failure is not None:
                raise failure
            os.replace(tmp, root / "new" / tmp.name.rpartition(".")[0])
        except OSError as error:
            outcome[row_id] = error
            continue
        outcome[row_id] = None
        renamed.append(row_id)
    return renamed


def _sync(handle: BinaryIO) -> OSError | None:
    """Put one written file on stable storage and close it; the error that kept it off, if any."""
    try:
        with handle:
            os.fsync(handle.fileno())
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
