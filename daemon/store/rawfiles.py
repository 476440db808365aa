"""Where a stored message's raw bytes live: a large one as a file in the blob store (R-36), a
small one in its ``messages.raw`` column.

A large message is copied from its spool file in pieces, so no process holds it whole to store
it; the file is named by its sha256, so a retried message writes the same file, and it is on
disk before the commit that names it (``messages.raw_sha256``). Rows from before this (raw
bytes in the column, no digest) read as they always did.
"""

from __future__ import annotations

from pathlib import Path

from postdesk.daemon.intake.spool import SpoolEntry
from postdesk.daemon.store.attachments import blob_path, store_stream

IN_ROW_MAX = 1 << 20  # raw messages up to this size stay in their row (one write, no file)


def store_raw(data_dir: Path, entry: SpoolEntry, size: int) -> str | None:
    """Copy a large claimed message of ``size`` bytes into the blob store and return its
    sha256; None for a message small enough to keep in its row (its file is not opened)."""
    if size <= IN_ROW_MAX:
        return None
    with entry.open_raw() as handle:
        return store_stream(data_dir, handle)[0]


def message_raw(data_dir: Path, raw: bytes, raw_sha256: str | None) -> bytes | None:
    """A stored message's raw bytes: its file when it has one, else its column; None when its
    file is not in ``data_dir`` (another daemon's data dir holds it, or it was lost)."""
    if not raw_sha256:
        return bytes(raw)
    try:
        return blob_path(data_dir, raw_sha256).read_bytes()
    except FileNotFoundError:
        return None
