"""The blob store under ``<data_dir>/attachments``: attachment files and the raw files of large
messages, each named by its content hash, never by sender."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from postdesk.daemon.intake.spool import fsync_dir

_CHUNK = 1 << 20  # bytes copied at a time by ``store_stream``


def store_blob(data_dir: Path, data: bytes) -> str:
    """Write ``data`` once (atomically) and return its sha256, which is also its file name."""
    digest = hashlib.sha256(data).hexdigest()
    target = blob_path(data_dir, digest)
    if target.exists():
        return digest
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{digest}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    return digest


def store_stream(data_dir: Path, source: BinaryIO) -> tuple[str, int]:
    """Copy ``source`` (from its position to the end) into the store in pieces, never whole in
    memory; return its sha256 and size. Written once, atomically, and durably: the file and
    its directory entry are on disk before this returns (a commit naming it follows)."""
    root = data_dir / "attachments"
    root.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with tempfile.NamedTemporaryFile(dir=root, prefix=".incoming.", delete=False) as handle:
        temporary = Path(handle.name)
        try:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                handle.write(chunk)
                size += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    name = digest.hexdigest()
    target = blob_path(data_dir, name)
    if target.exists():  # the same bytes stored before (a retried message): keep that file
        temporary.unlink()
        return name, size
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temporary, target)
    fsync_dir(target.parent)
    return name, size


def blob_path(data_dir: Path, digest: str) -> Path:
    """Where the blob with this sha256 lives."""
    if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise ValueError("not a sha256 digest")
    return data_dir / "attachments" / digest[:2] / digest[2:4] / digest
