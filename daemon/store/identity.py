"""This daemon's name in shared tables (outbox and IMAP leases), stable across its restarts.

Kept in ``<data_dir>/daemon-id`` (``serve`` holds the data dir's lock, so one daemon owns it):
a daemon restarted after ``kill -9`` recognises its own leases and releases them at once
instead of waiting for them to run out, while other daemons keep theirs.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

FILENAME = "daemon-id"


def daemon_id(data_dir: Path) -> str:
    """``host:random`` read from the data dir, created there on first use."""
    path = data_dir / FILENAME
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    if not value:
        data_dir.mkdir(parents=True, exist_ok=True)
        value = f"{socket.gethostname()}:{secrets.token_hex(8)}"[:255]
        partial = path.with_name(f"{FILENAME}.{os.getpid()}.tmp")
        partial.write_text(value + "\n")
        os.replace(partial, path)
    return value
