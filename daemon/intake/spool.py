"""A durable file queue: the point of commitment for every message we accept.

Layout under ``<data_dir>/spool``: ``tmp/`` (being written), ``new/`` (waiting), ``work/``
(claimed by a worker). A file is ``<spool_id>.<attempts>.msg`` holding one JSON envelope line
followed by the raw message bytes; in ``work/`` its name starts with ``<pid>~``, the claiming
process, so the claims of a worker that died can be told from those of live ones. ``write`` returns only after the bytes and the directory entry
are on stable storage (write, flush, fsync, rename, fsync the directory), so a ``250`` that
follows it is a promise a crash cannot break.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections import deque
from collections.abc import Container
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("postdesk.spool")

SUFFIX = ".msg"
OWNER_SEPARATOR = "~"


@dataclass(frozen=True)
class Envelope:
    """What we know about a message besides its bytes: how and from whom it arrived."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    channel: str  # smtp | imap:<mailbox> | ingest | replay
    received_at: float
    peer: str = ""


@dataclass(frozen=True)
class SpoolEntry:
    """A claimed message: the worker owns it until ``done``, ``retry`` or ``give_up``."""

    spool_id: str
    attempts: int
    path: Path
    envelope: Envelope
    raw: bytes


class Spool:
    """The on-disk queue between intake and processing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp, self.new, self.work = root / "tmp", root / "new", root / "work"
        for folder in (self.tmp, self.new, self.work):
            folder.mkdir(parents=True, exist_ok=True)
        self._batch: deque[str] = deque()

    def write(self, raw: bytes, envelope: Envelope) -> str:
        """Store a message durably and return its spool id; raises OSError on any failure."""
        spool_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        name = f"{spool_id}.0{SUFFIX}"
        tmp_path = self.tmp / name
        try:
            with tmp_path.open("xb") as handle:
                handle.write(json.dumps(asdict(envelope)).encode() + b"\n")
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp_path, self.new / name)
            _fsync_dir(self.new)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        return spool_id

    def claim(self) -> SpoolEntry | None:
        """Move the oldest waiting message to ``work/`` and return it, or None when empty."""
        while True:
            if not self._batch:
                self._batch.extend(sorted(os.listdir(self.new)))
                if not self._batch:
                    return None
            name = self._batch.popleft()
            claimed = self.work / f"{os.getpid()}{OWNER_SEPARATOR}{name}"
            try:
                os.rename(self.new / name, claimed)
            except FileNotFoundError:
                continue  # another process claimed it first
            return _read_entry(claimed)

    def done(self, entry: SpoolEntry) -> None:
        """Forget a message whose outcome is committed to the database.

        No directory fsync: if a crash undoes the unlink, the message is processed again and
        the dedupe step recognises it.
        """
        entry.path.unlink(missing_ok=True)

    def retry(self, entry: SpoolEntry, count_attempt: bool) -> None:
        """Put a message back in the queue, counting the attempt when the message was at fault."""
        attempts = entry.attempts + (1 if count_attempt else 0)
        target = self.new / f"{entry.spool_id}.{attempts}{SUFFIX}"
        os.rename(entry.path, target)
        _fsync_dir(self.new)

    def recover(self) -> int:
        """At start-up: requeue interrupted work (counting the attempt) and drop partial writes."""
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
        count = 0
        for path in sorted(self.work.iterdir()):
            spool_id, attempts = _split_name(path.name)
            os.rename(path, self.new / f"{spool_id}.{attempts + 1}{SUFFIX}")
            count += 1
        if count:
            _fsync_dir(self.new)
            log.warning("requeued %d message(s) interrupted by the last shutdown", count)
        return count

    def claims(self, owner: int | None = None) -> list[SpoolEntry]:
        """Messages in ``work/`` claimed by process ``owner`` (every claim when None)."""
        entries = []
        for path in sorted(self.work.iterdir()):
            pid, _, _rest = path.name.rpartition(OWNER_SEPARATOR)
            if owner is None or pid == str(owner):
                with contextlib.suppress(FileNotFoundError):
                    entries.append(_read_entry(path))
        return entries

    def present(self, spool_ids: set[str]) -> set[str]:
        """Which of ``spool_ids`` still wait or are being worked on (not yet settled)."""
        names = [*os.listdir(self.new), *os.listdir(self.work)]
        return {sid for sid in (_split_name(name)[0] for name in names) if sid in spool_ids}

    def pending(self) -> int:
        """How many messages wait or are being worked on."""
        return len(os.listdir(self.new)) + len(os.listdir(self.work))

    def free_bytes(self) -> int:
        """Free space on the spool's file system."""
        return shutil.disk_usage(self.root).free


def peek_waiting(
    waiting: Path, count: int, limit: int, skip: Container[str] = ()
) -> list[tuple[str, bytes]]:
    """The oldest ``count`` waiting messages of the folder ``waiting`` (a spool's ``new/``)
    as (file name, first ``limit`` bytes of the raw message), without claiming them; those
    named in ``skip`` count but are not read.

    For looking ahead only: a file may be claimed and gone a moment later (it is skipped).
    """
    found: list[tuple[str, bytes]] = []
    for name in sorted(os.listdir(waiting))[:count]:
        if name in skip:
            continue
        try:
            with (waiting / name).open("rb") as handle:
                handle.readline()  # the envelope line
                found.append((name, handle.read(limit)))
        except FileNotFoundError:
            continue
    return found


def _split_name(name: str) -> tuple[str, int]:
    stem = name.rpartition(OWNER_SEPARATOR)[2].removesuffix(SUFFIX)
    spool_id, _, attempts = stem.rpartition(".")
    return spool_id, int(attempts)


def _read_entry(path: Path) -> SpoolEntry:
    spool_id, attempts = _split_name(path.name)
    data = path.read_bytes()
    header, _, raw = data.partition(b"\n")
    fields = json.loads(header)
    fields["rcpt_tos"] = tuple(fields["rcpt_tos"])
    return SpoolEntry(spool_id, attempts, path, Envelope(**fields), raw)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
