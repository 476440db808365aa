"""``postdesk ingest``: feed .eml files, Maildirs and mbox files through the live pipeline."""

from __future__ import annotations

import mailbox
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from postdesk.daemon.spool import Envelope, Spool
from postdesk.daemon.worker import Outcome


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


def summary(outcomes: list[Outcome]) -> str:
    """One line: how many messages ended how."""
    counts = Counter(o.disposition for o in outcomes)
    created = sum(1 for o in outcomes if o.created)
    parts = [f"{counts.pop('stored', 0)} stored ({created} new tickets)"]
    parts += [f"{n} {kind}" for kind, n in sorted(counts.items())]
    return f"ingested {len(outcomes)} message(s): " + ", ".join(parts)
