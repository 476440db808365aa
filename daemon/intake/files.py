"""``postdesk ingest``: feed .eml files, Maildirs and mbox files through the live pipeline."""

from __future__ import annotations

import mailbox
import time
from collections.abc import Iterator
from pathlib import Path

from postdesk.daemon.intake.spool import Envelope, Spool


class IngestError(Exception):
    """A path given to ``ingest`` cannot be read as mail."""


def read_messages(path: Path) -> Iterator[bytes]:
    """Raw messages at ``path``: one .eml file, a Maildir (cur/new), or an mbox file."""
    if path.is_dir():
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise IngestError(f"{path} is a folder but not a Maildir (no cur/ or new/ inside)")
        box = mailbox.Maildir(path, create=False)
        for key in box.iterkeys():
            yield box.get_bytes(key)
        return
    if not path.is_file():
        raise IngestError(f"{path} does not exist")
    with path.open("rb") as handle:
        first_line = handle.readline()
    if first_line.startswith(b"From "):
        mbox = mailbox.mbox(path, create=False)
        for key in mbox.iterkeys():
            yield mbox.get_bytes(key)
        return
    yield path.read_bytes()


def spool_paths(spool: Spool, paths: list[Path], recipient: str) -> int:
    """Spool every message found at ``paths``; returns how many were spooled."""
    count = 0
    for path in paths:
        for raw in read_messages(path):
            envelope = Envelope("", (recipient,), "ingest", time.time(), peer=str(path))
            spool.write(raw, envelope)
            count += 1
    return count
