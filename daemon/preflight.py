"""Checks of the configured places that ``check`` and ``serve`` make before touching anything.

A data dir that cannot be created and an SMTP address nobody can listen on are configuration
errors: each becomes a ``ConfigError`` naming its key, before the database is migrated.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket

from postdesk.daemon.config import ConfigError, Settings

SERVE_LOCK = "serve.lock"  # held by ``postdesk serve`` for as long as it runs


def ensure_data_dir(settings: Settings) -> None:
    """Create ``helpdesk.data_dir`` if needed; ConfigError when it cannot be made or written."""
    folder = settings.data_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"helpdesk.data_dir: cannot create {folder}: {reason}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"helpdesk.data_dir: {folder} is not writable by this user")


def ensure_smtp_listen(settings: Settings) -> None:
    """ConfigError naming ``smtp.listen`` when nobody could listen there right now."""
    host, port = settings.smtp.host_port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family = infos[0][0]
        with socket.create_server((host, port), family=family):
            pass
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        if error.errno == errno.EADDRINUSE:
            reason += " (another program listens there: stop it or change smtp.listen)"
        raise ConfigError(
            f"smtp.listen: cannot listen on {settings.smtp.listen}: {reason}"
        ) from None


def serve_running(settings: Settings) -> bool:
    """True while a ``postdesk serve`` holds this data dir."""
    path = settings.data_dir / SERVE_LOCK
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
