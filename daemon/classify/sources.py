"""Training and evaluation data: mail folders, Maildirs, mbox files, archives and CSV tables.

The fixed split: a message (or CSV row) belongs to the *test* part when the first byte of the
SHA-256 of its file name (or of its row's text) is below 77 (about 30%); everything else is
the *train* part. File names, not paths, so moving a corpus does not change the split.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import mailbox
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from postdesk.daemon.classify.features import Sample, from_message, from_text
from postdesk.daemon.classify.names import HAM, SPAM
from postdesk.daemon.mail.parse import MessageRejected, parse_message

log = logging.getLogger("postdesk.classify")

SPLITS = ("all", "train", "test")
# How spam tables label their rows ("v1": ham/spam, "spam": 1/0, "is_spam": True/False ...).
SPAM_VALUES = {
    **dict.fromkeys(("spam", "1", "1.0", "true", "yes", "junk"), SPAM),
    **dict.fromkeys(("ham", "0", "0.0", "false", "no", "legit", "legitimate", "not spam"), HAM),
}
TEST_BYTE_BELOW = 77  # of 256: about 30% of the data is the test part


class SourceError(Exception):
    """Training data cannot be read as given (missing file, wrong column, ...)."""


def in_split(key: str, split: str) -> bool:
    """True when the item named ``key`` belongs to ``split`` (all, train or test)."""
    if split == "all":
        return True
    is_test = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[0] < TEST_BYTE_BELOW
    return is_test == (split == "test")


def raw_messages(paths: Sequence[Path], split: str = "all") -> Iterator[tuple[str, bytes]]:
    """(name, raw bytes) of every message at ``paths`` in ``split``.

    A Maildir is read message by message; another folder file by file (each a message, an
    mbox, an archive or a gzipped file, see :func:`_file_messages`; a leading mbox ``From ``
    line is tolerated); hidden files are skipped. A message's name in the split is its file
    name (Maildir: its key; ``name#N``: the N-th of an mbox).
    (``postdesk ingest``'s reader gives no names for the split, so it is not used here.)
    """
    for path in paths:
        if not path.exists():
            raise SourceError(f"{path} does not exist")
        if path.is_dir() and ((path / "cur").is_dir() or (path / "new").is_dir()):
            box = mailbox.Maildir(path, create=False)
            for key in sorted(box.keys()):
                if in_split(key, split):
                    yield key, box.get_bytes(key)
            continue
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            files = [path]
        for file in files:
            try:
                for name, raw in _file_messages(file):
                    if in_split(name, split):
                        yield name, raw
            except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error) as error:
                raise SourceError(f"{file}: cannot be read: {error}") from None


def _file_messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, raw bytes) of the message in a file, of every message of an mbox file, or of
    every message in an archive (tar, tar.gz, tar.bz2, zip; each member a message or an
    mbox, named by its file name) or a gzipped file, as corpora are published."""
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            for member in archive:
                handle = archive.extractfile(member) if member.isfile() else None
                if handle is not None and not _hidden(member.name):
                    yield from _named(PurePosixPath(member.name).name, handle.read())
        return
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and not _hidden(info.filename):
                    yield from _named(PurePosixPath(info.filename).name, archive.read(info))
        return
    with path.open("rb") as handle:
        start = handle.read(5)
    if start[:2] == b"\x1f\x8b":
        yield from _named(path.name, gzip.decompress(path.read_bytes()))
    elif start == b"From ":  # an mbox, read from its file
        yield from _numbered(path.name, _mbox_messages(path))
    else:
        yield path.name, path.read_bytes()


def _hidden(name: str) -> bool:
    """True for an archive member in or named as a hidden file (``.DS_Store``, ``__MACOSX``)."""
    return any(part.startswith((".", "__MACOSX")) for part in PurePosixPath(name).parts)


def _named(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    """(name, raw bytes) of a message held in memory, or of each message of an mbox."""
    if not data.startswith(b"From "):
        yield name, data
        return
    with tempfile.TemporaryDirectory() as folder:  # the stdlib's mbox reader wants a file
        path = Path(folder) / "mbox"
        path.write_bytes(data)
        yield from _numbered(name, _mbox_messages(path))


def _numbered(name: str, messages: Iterator[bytes]) -> Iterator[tuple[str, bytes]]:
    """The messages of the mbox ``name``: the first named so, the N-th ``name#N``."""
    for index, raw in enumerate(messages):
        yield (name if index == 0 else f"{name}#{index}"), raw


def _mbox_messages(path: Path) -> Iterator[bytes]:
    """Every message of the mbox file ``path`` (closed when done)."""
    box = mailbox.mbox(path, create=False)
    try:
        for key in box.iterkeys():
            yield box.get_bytes(key)
    finally:
        box.close()


def featurise(raw: bytes) -> Sample | None:
    """The sample of one raw message, or None (logged) when it cannot be parsed."""
    try:
        return from_message(parse_message(raw))
    except MessageRejected as error:
        log.info("not used: cannot parse message: %s", error.reason)
        return None


@dataclass(frozen=True)
class Table:
    """Rows of a CSV file as samples and labels."""

    samples: list[Sample]
    labels: list[str]


def read_csv(path: Path, text_columns: Sequence[str], label: str, split: str = "all") -> Table:
    """Samples from ``text_columns`` (first is the subject when there are two or more) and labels.

    Rows without a label, and a last row cut off mid-way, are skipped.
    """
    csv.field_size_limit(sys.maxsize)
    samples: list[Sample] = []
    labels: list[str] = []
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in (*text_columns, label) if c not in (reader.fieldnames or [])]
            if missing:
                found = ", ".join(reader.fieldnames or [])
                raise SourceError(f"{path}: no column {missing[0]!r} (columns: {found})")
            for row in reader:
                value = (row.get(label) or "").strip()
                texts = [(row.get(c) or "").strip() for c in text_columns]
                if not value or not any(texts) or None in row.values():
                    continue
                if not in_split("\n".join(texts), split):
                    continue
                subject, body = (
                    (texts[0], "\n".join(texts[1:])) if len(texts) > 1 else ("", texts[0])
                )
                samples.append(from_text(subject, body))
                labels.append(value)
    except FileNotFoundError:
        raise SourceError(f"{path} does not exist") from None
    except csv.Error as error:
        raise SourceError(f"{path} is not a readable CSV file: {error}") from None
    return Table(samples, labels)


def spam_labels(values: Sequence[str], column: str) -> list[str]:
    """The values of a spam table's label ``column`` as ham or spam (``SPAM_VALUES``, any
    case); a value that is neither is an error naming it."""
    labels = []
    for value in values:
        label = SPAM_VALUES.get(value.strip().lower())
        if label is None:
            raise SourceError(
                f"column {column!r}: {value[:40]!r} is neither spam nor ham "
                "(expected spam/ham, 1/0, true/false or yes/no)"
            )
        labels.append(label)
    return labels
