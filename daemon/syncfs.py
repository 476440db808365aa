"""Making many freshly written files durable with one call instead of an fsync each.

``syncfs(2)`` flushes every file of one file system and waits for it (Linux; since 5.8 it also
reports a write-back error). Where the C library lacks it, ``sync(2)`` does the same for every
file system. Either way a group of files written to a temporary folder costs one flush before
the files are renamed into place. :func:`check_written` then tells, file by file, whether the
flush wrote that file's pages, so one failed file fails only itself.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

_LIBC = ctypes.CDLL(None, use_errno=True)
_SYNCFS = getattr(_LIBC, "syncfs", None)
_SYNC_FILE_RANGE = getattr(_LIBC, "sync_file_range", None)
if _SYNC_FILE_RANGE is not None:
    _SYNC_FILE_RANGE.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
# <fcntl.h> SYNC_FILE_RANGE_WAIT_BEFORE | _WRITE | _WAIT_AFTER: write what is still dirty, wait.
_WRITE_AND_WAIT = 1 | 2 | 4


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


def check_written(descriptor: int) -> None:
    """After :func:`sync_file_system`, raise the OSError that kept the pages of the open file
    off the disk since it was opened, if any (``sync_file_range(2)``: after the flush it has
    nothing to write or wait for, and no device flush either). Where the C library lacks it,
    the file is fsynced instead."""
    if _SYNC_FILE_RANGE is None:
        os.fsync(descriptor)
    elif _SYNC_FILE_RANGE(descriptor, 0, 0, _WRITE_AND_WAIT) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
