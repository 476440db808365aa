"""Copying files with checksums and fsync, and a progress bar that only shows on a terminal."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 20


def progress(total: int, what: str) -> tqdm[None]:
    """A byte progress bar on stderr; hidden when stderr is not a terminal."""
    return tqdm(total=total, unit="B", unit_scale=True, desc=what, disable=None, leave=False)


def copy_file(source: Path, target: Path, bar: tqdm[None] | None = None) -> str:
    """Copy ``source`` to ``target`` (made durable) and return the sha256 of what was written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with source.open("rb") as reader, target.open("wb") as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            writer.write(chunk)
            if bar is not None:
                bar.update(len(chunk))
        writer.flush()
        os.fsync(writer.fileno())
    return digest.hexdigest()


def sha256_file(path: Path, bar: tqdm[None] | None = None) -> str:
    """The sha256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
    return digest.hexdigest()


def is_blob_name(name: str) -> bool:
    """Whether ``name`` is an attachment file name (a sha256 in hex), not a temporary file."""
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)
