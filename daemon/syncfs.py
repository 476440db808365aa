"""Making many freshly written files durable with one call instead of an fsync each.

``syncfs(2)`` flushes every file of one file system and waits for it (Linux; since 5.8 it also
reports a write-back error). Where the C library lacks it, ``sync(2)`` does the same for every
file system. Either way a group of files written to a temporary folder costs one flush before
the files are renamed into place.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

_SYNCFS = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)


def sync_file_system(folder: Path) -> None:
    """Flush every written file on the file system holding ``folder``; raises OSError."""
    if _SYNCFS is None:
        os.sync()
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        if _SYNCFS(descriptor) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs {folder}: {os.strerror(code)}")
    finally:
        os.close(descriptor)
