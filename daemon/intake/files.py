"""``postdesk ingest``: feed .eml files, folders of them, Maildirs and mbox files to the spool.

What a path is, decided on evidence:

* a folder with ``new/`` or ``cur/`` (either is enough) is a Maildir: every file in both, skipping
  names starting with a dot; any other folder is a plain folder of ``*.eml`` files;
* a file named ``*.eml`` is always ONE message. An mbox ``From `` envelope line at its start is
  a transport artefact written by the program that exported it, not part of the message
  (RFC 4155): it is dropped; every other byte is spooled as it is;
* any other file is an mbox when its first line is an mbox envelope line
  (``From <sender> <date with a year>``), else one message.

Splitting an mbox (``mboxo``/``mboxrd``, RFC 4155): a message starts at an envelope line at the
start of the file or after a blank line, and never inside an open MIME multipart of the
message before it (an unescaped ``From `` line of an attached git patch is body text). Lines
escaped as ``>From `` (any number of ``>``) lose one ``>``, which restores what was delivered.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from postdesk.daemon.intake.spool import Envelope, Spool

__all__ = [
    "IngestError",
    "read_messages",
    "spool_paths",
    "strip_envelope_line",
    "wait_until_processed",
    "waiting",
]

# "From sender@example.org Mon Sep 17 00:00:00 2001" (asctime, maybe a zone): a year at the end.
_ENVELOPE = re.compile(rb"From \S*[ \t]+.*\b\d{4}(?:[ \t]+[+-]?\w+)?[ \t]*\r?\n?")
_ESCAPED_FROM = re.compile(rb"^>(>*From )", re.M)
_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))', re.I)
_LINE = re.compile(rb"[^\n]*\n|[^\n]+")
SPOOL_GROUP = 256  # messages spooled with one sync of the file system (Spool.write_many)


class IngestError(Exception):
    """A path given to ``ingest`` cannot be read as mail."""


def read_messages(path: Path) -> Iterator[bytes]:
    """Raw messages at ``path`` (see the module docstring for how its kind is decided)."""
    if path.is_dir():
        yield from _folder(path)
        return
    if not path.is_file():
        raise IngestError(f"{path} does not exist")
    if path.suffix.lower() == ".eml":
        yield strip_envelope_line(path.read_bytes())
        return
    with path.open("rb") as handle:
        first_line = handle.readline()
    if _ENVELOPE.fullmatch(first_line):
        yield from split_mbox(path.read_bytes())
        return
    yield path.read_bytes()


def strip_envelope_line(raw: bytes) -> bytes:
    """``raw`` without a leading mbox ``From `` envelope line (the only byte change made)."""
    if not raw.startswith(b"From "):
        return raw
    end = raw.find(b"\n")
    return raw[end + 1 :] if end >= 0 else b""


def _folder(path: Path) -> Iterator[bytes]:
    """Messages in a Maildir (new/ and/or cur/) or in a plain folder of ``*.eml`` files."""
    subdirs = [path / name for name in ("new", "cur") if (path / name).is_dir()]
    if subdirs:
        files = [f for d in subdirs for f in sorted(d.iterdir()) if not f.name.startswith(".")]
        for file in files:
            if file.is_file():
                yield file.read_bytes()
        return
    emls = sorted(f for f in path.iterdir() if f.suffix.lower() == ".eml" and f.is_file())
    if not emls:
        raise IngestError(f"{path} is a folder with no .eml files and not a Maildir (new/, cur/)")
    for file in emls:
        yield strip_envelope_line(file.read_bytes())


def split_mbox(data: bytes) -> Iterator[bytes]:
    """The messages of an mbox file, envelope lines dropped and ``>From `` unescaped."""
    current: list[bytes] = []
    closing: bytes | None = None  # the close delimiter of an open top-level multipart
    in_header = False
    header: list[bytes] = []
    previous_blank = True
    for line in _LINE.findall(data):
        if previous_blank and closing is None and _ENVELOPE.fullmatch(line):
            if current:
                yield _message(current)
            current, header, in_header, previous_blank = [], [], True, False
            continue
        current.append(line)
        blank = not line.strip(b"\r\n")
        if in_header:
            if blank:
                in_header = False
                closing = _close_delimiter(b"".join(header))
            else:
                header.append(line)
        elif closing is not None and line.rstrip().startswith(closing):
            closing = None
        previous_blank = blank
    if current:
        yield _message(current)


def _close_delimiter(header: bytes) -> bytes | None:
    """``--boundary--`` when the header block declares a multipart with a boundary."""
    if not re.search(rb"^content-type:\s*multipart/", header, re.I | re.M):
        return None
    match = _BOUNDARY.search(header)
    if match is None:
        return None
    return b"--" + (match.group(1) or match.group(2)).rstrip() + b"--"


def _message(lines: list[bytes]) -> bytes:
    """One mbox message: the trailing separator blank line dropped, ``>From `` unescaped."""
    if lines and not lines[-1].strip(b"\r\n"):
        lines = lines[:-1]
    return _ESCAPED_FROM.sub(rb"\1", b"".join(lines))


def waiting(spool: Spool, ids: list[str]) -> list[str]:
    """Those of ``ids`` still in the spool (waiting or being worked on)."""
    names = [*os.listdir(spool.new), *os.listdir(spool.work)]
    present = {name.split(".", 1)[0] for name in names}
    return [spool_id for spool_id in ids if spool_id in present]


def wait_until_processed(spool: Spool, ids: list[str], patience: float) -> list[str]:
    """Wait while someone else (a running ``serve``) works through ``ids``; returns those left.

    Gives up when nothing has moved for ``patience`` seconds.
    """
    left = waiting(spool, ids)
    last_progress = time.monotonic()
    while left and time.monotonic() - last_progress < patience:
        time.sleep(0.2)
        now_left = waiting(spool, left)
        if len(now_left) < len(left):
            last_progress = time.monotonic()
        left = now_left
    return left


def spool_paths(spool: Spool, paths: list[Path], recipient: str) -> list[str]:
    """Spool every message found at ``paths``, ``SPOOL_GROUP`` at a time; returns the spool
    ids, in order."""
    messages = (
        (raw, Envelope("", (recipient,), "ingest", time.time(), peer=str(path)))
        for path in paths
        for raw in read_messages(path)
    )
    ids: list[str] = []
    while group := spool.write_many(itertools.islice(messages, SPOOL_GROUP)):
        ids.extend(group)  # one message in memory at a time: each is written as it is read
    return ids
