"""A durable file queue: the point of commitment for every message we accept.

Layout under ``<data_dir>/spool``: ``tmp/`` (being written), ``new/`` (waiting), ``work/``
(claimed by a worker), ``done/`` (settled, about to be deleted). A file is
``<spool_id>.<attempts>.msg`` holding one JSON envelope line followed by the raw message bytes; in ``work/`` its name starts with ``<pid>~``, the claiming
process, so the claims of a worker that died can be told from those of live ones. ``write``
(or ``open`` ... ``IncomingFile.commit`` for a message streamed in pieces) returns only after
the bytes and the directory entry are on stable storage (write, flush, fsync, rename, fsync the
directory), so a ``250`` that follows it is a promise a crash cannot break. ``write_many``
keeps that promise for a group of messages with one sync of the file system for all of them;
``commit_group`` does the same for messages streamed in pieces (SMTP's group commit).
A settled message is renamed into ``done/`` and deleted there by a thread of its own
(:class:`_Trash`): deleting a file frees its blocks, which can wait on the disk (a discard
request per file where the file system is mounted with ``discard``: 0.2-1.2 ms each on this
project's machines), and the worker need not wait for that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from postdesk.daemon.syncfs import sync_file_system

log = logging.getLogger("postdesk.spool")

SUFFIX = ".msg"
OWNER_SEPARATOR = "~"
IN_MEMORY = 1 << 20  # an incoming message up to this size is kept in memory, larger ones in tmp/
READ_WHOLE = 1 << 16  # a spool file smaller than this is read whole when it is claimed


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
    """A claimed message: the worker owns it until ``done``, ``retry`` or ``give_up``.

    Its raw bytes stay in the file (from ``offset`` on) until asked for: a large message is
    read in pieces (``open_raw``) rather than held whole (R-36).
    """

    spool_id: str
    attempts: int
    path: Path
    envelope: Envelope
    offset: int
    data: bytes | None = field(default=None, repr=False, compare=False)  # a small message,
    # read whole when it was claimed (None: a larger one, read from the file when asked for)

    def open_raw(self) -> BinaryIO:
        """The spool file, open for reading at the first byte of the raw message."""
        handle = self.path.open("rb")
        handle.seek(self.offset)
        return handle

    @property
    def raw(self) -> bytes:
        """The raw message, read from the file in one piece (unless it was read already)."""
        if self.data is not None:
            return self.data
        with self.open_raw() as handle:  # one exact-size read: no growing buffer copied
            return handle.read(os.fstat(handle.fileno()).st_size - self.offset)


class Spool:
    """The on-disk queue between intake and processing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp, self.new, self.work = root / "tmp", root / "new", root / "work"
        self.settled = root / "done"
        for folder in (self.tmp, self.new, self.work, self.settled):
            folder.mkdir(parents=True, exist_ok=True)
        self._batch: deque[str] = deque()
        self._trash = _Trash()
        for leftover in os.listdir(self.settled):  # settled before a crash: never needed again
            self._trash.put(self.settled / leftover)

    def write(self, raw: bytes, envelope: Envelope) -> str:
        """Store a message durably and return its spool id; raises OSError on any failure."""
        incoming = self.open(envelope)
        try:
            incoming.write(raw)
            return incoming.commit()
        finally:
            incoming.discard()

    def write_many(self, messages: Iterable[tuple[bytes, Envelope]]) -> list[str]:
        """Store a group of messages durably and return their spool ids, in order.

        The files are written to ``tmp/`` unsynced, made durable by one sync of the file system,
        then renamed into ``new/``, and ``new/`` is synced once: each file in ``new/`` is as
        durable as one from ``write``, for two syncs per group instead of two per message.
        Raises OSError; the files not yet in ``new/`` are then removed.
        """
        staged: list[tuple[str, Path]] = []
        try:
            for raw, envelope in messages:
                spool_id = new_spool_id()
                path = self.tmp / f"{spool_id}.0{SUFFIX}"
                staged.append((spool_id, path))
                with path.open("xb") as handle:
                    handle.write(_envelope_line(envelope))
                    handle.write(raw)
            if not staged:
                return []
            sync_file_system(self.tmp)
            for _spool_id, path in staged:
                os.rename(path, self.new / path.name)
            fsync_dir(self.new)
        except BaseException:
            for _spool_id, path in staged:
                path.unlink(missing_ok=True)
            raise
        return [spool_id for spool_id, _path in staged]

    def commit_group(self, group: list[IncomingFile]) -> list[str]:
        """Make a group of fully received messages durable; their spool ids, in order.

        One message is committed on its own (fsync, rename, fsync of ``new/``: less than a sync
        of the whole file system). A larger group is staged in ``tmp/`` unsynced, made durable
        by one sync of the file system, renamed into ``new/``, and ``new/`` is synced once. On
        any failure (OSError or a bug) none of the group is left in ``tmp/`` or ``new/`` (short
        of one a worker claimed already, which the dedupe step recognises if sent again) and
        the error is raised.
        """
        if len(group) == 1:
            return [group[0].commit()]
        renamed: list[Path] = []
        try:
            for incoming in group:
                incoming.stage()
            sync_file_system(self.tmp)
            for incoming in group:
                target = self.new / incoming.name
                os.rename(incoming.path, target)
                renamed.append(target)
            fsync_dir(self.new)
        except BaseException:
            for incoming in group:
                incoming.discard()  # one not staged yet: its open file, if any
                incoming.path.unlink(missing_ok=True)
            for path in renamed:
                path.unlink(missing_ok=True)
            raise
        return [incoming.spool_id for incoming in group]

    def open(self, envelope: Envelope) -> IncomingFile:
        """Start a message to be written piece by piece (SMTP streams DATA here); see
        ``IncomingFile``."""
        return IncomingFile(self, envelope)

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
        """Forget a message whose outcome is committed to the database: into ``done/`` at
        once, deleted soon by the trash thread (:meth:`flush` waits for it).

        No directory fsync: if a crash undoes the rename, the message is processed again and
        the dedupe step recognises it.
        """
        settled = self.settled / entry.path.name
        try:
            os.rename(entry.path, settled)
        except FileNotFoundError:
            return
        self._trash.put(settled)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds until the settled messages are deleted; False if
        some are left (the next start deletes them)."""
        return self._trash.flush(timeout)

    def retry(self, entry: SpoolEntry, count_attempt: bool) -> None:
        """Put a message back in the queue, counting the attempt when the message was at fault."""
        attempts = entry.attempts + (1 if count_attempt else 0)
        target = self.new / f"{entry.spool_id}.{attempts}{SUFFIX}"
        os.rename(entry.path, target)
        fsync_dir(self.new)

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
            fsync_dir(self.new)
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


class IncomingFile:
    """A message being spooled piece by piece: ``write`` its bytes, then ``commit`` or ``discard``.

    The first ``IN_MEMORY`` bytes stay in memory; a larger message goes on to a file in
    ``tmp/`` as it arrives. ``commit`` makes it durable and moves it to ``new/``; ``discard``
    (safe on every exit path, also after ``commit``) drops it and its partial file. A file left
    behind by a crash is removed by ``Spool.recover`` at the next start.
    """

    def __init__(self, spool: Spool, envelope: Envelope) -> None:
        self.spool_id = new_spool_id()
        self.name = f"{self.spool_id}.0{SUFFIX}"
        self.path = spool.tmp / self.name
        self.size = 0  # message bytes written so far
        self._new = spool.new
        self._pending = bytearray(_envelope_line(envelope))
        self._handle: BinaryIO | None = None
        self._settled = False

    def write(self, data: bytes) -> None:
        """Append message bytes (nothing is durable before ``commit``); raises OSError."""
        self.size += len(data)
        if self._handle is None and len(self._pending) + len(data) <= IN_MEMORY:
            self._pending += data
        else:
            self._file().write(data)

    def commit(self) -> str:
        """Write, fsync, rename into ``new/`` and fsync the folder; returns the spool id.

        Raises OSError on any failure, after removing the file (from ``new/`` too: the message
        is refused, so it must not be processed unless a worker claimed it already).
        """
        self._settled = True
        try:
            with self._file() as handle:
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(self.path, self._new / self.name)
            fsync_dir(self._new)
        except BaseException:
            self.path.unlink(missing_ok=True)
            (self._new / self.name).unlink(missing_ok=True)
            raise
        return self.spool_id

    def stage(self) -> None:
        """Write the whole message to its file in ``tmp/`` and close it, not synced: the
        first step of ``Spool.commit_group``, which syncs, renames and cleans up."""
        self._settled = True
        with self._file():
            pass

    def discard(self) -> None:
        """Drop the partial message, unless ``commit`` has started (it cleans up itself)."""
        if self._settled:
            return
        self._settled = True
        self._pending.clear()
        if self._handle is not None:
            with contextlib.suppress(OSError):  # a failed flush of bytes thrown away anyway
                self._handle.close()
            self.path.unlink(missing_ok=True)

    def _file(self) -> BinaryIO:
        """The temp file, created (with what was kept in memory so far) on first use."""
        if self._handle is None:
            self._handle = self.path.open("xb", buffering=IN_MEMORY)
            self._handle.write(self._pending)
            self._pending.clear()
        return self._handle


def new_spool_id() -> str:
    """A fresh spool id: the time in nanoseconds (so ids sort by arrival) and a random part."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"


def _envelope_line(envelope: Envelope) -> bytes:
    """The first line of a spool file: the envelope as JSON."""
    return json.dumps(vars(envelope)).encode() + b"\n"  # asdict's deep copy is not needed


class _Trash:
    """Deletes files on a daemon thread, started on first use, in the order they were put."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Path | threading.Event] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, path: Path) -> None:
        """Delete ``path`` soon."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="spool-trash", daemon=True
                    )
                    self._thread.start()
        self._queue.put(path)

    def flush(self, timeout: float | None) -> bool:
        """Wait until every file put so far is deleted; False after ``timeout`` seconds."""
        if self._thread is None:
            return True
        emptied = threading.Event()
        self._queue.put(emptied)
        return emptied.wait(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                os.unlink(item)
            except FileNotFoundError:
                pass
            except OSError as error:  # the next start tries again
                log.warning("could not delete settled spool file %s: %s", item.name, error)


def _split_name(name: str) -> tuple[str, int]:
    stem = name.rpartition(OWNER_SEPARATOR)[2].removesuffix(SUFFIX)
    spool_id, _, attempts = stem.rpartition(".")
    return spool_id, int(attempts)


def _read_entry(path: Path) -> SpoolEntry:
    spool_id, attempts = _split_name(path.name)
    with path.open("rb", buffering=0) as handle:
        head = handle.read(READ_WHOLE)
        if len(head) == READ_WHOLE:
            head += handle.readline()  # the envelope line, whole
    end = head.find(b"\n") + 1 or len(head)
    fields = json.loads(head[:end])
    fields["rcpt_tos"] = tuple(fields["rcpt_tos"])
    data = head[end:] if len(head) < READ_WHOLE else None  # the whole file was read
    return SpoolEntry(spool_id, attempts, path, Envelope(**fields), end, data)


def fsync_dir(folder: Path) -> None:
    """Make the entries of ``folder`` durable (after a rename or unlink in it)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
