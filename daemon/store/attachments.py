"""Attachment files under ``<data_dir>/attachments``, named by content hash, never by sender."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


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


def blob_path(data_dir: Path, digest: str) -> Path:
    """Where the attachment with this sha256 lives."""
    if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise ValueError("not a sha256 digest")
    return data_dir / "attachments" / digest[:2] / digest[2:4] / digest
