"""``postdesk restore SRC``: rebuild a data dir (and its database) from a verified backup.

The restored spool lands in ``spool/new``, so the next ``postdesk serve`` processes it; the
restored schema is upgraded by ``serve`` (or ``postdesk init``) like any older database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from postdesk.daemon.config import Settings
from postdesk.daemon.intake.spool import fsync_dir
from postdesk.daemon.ops import pgtools
from postdesk.daemon.ops.backup import PG_FILE, SQLITE_FILE
from postdesk.daemon.ops.errors import OpsUsageError
from postdesk.daemon.ops.files import copy_file, progress
from postdesk.daemon.ops.manifest import Manifest, verify
from postdesk.daemon.store.db import make_engine

RESTORED_FOLDERS = ("spool", "attachments")


def restore(settings: Settings, source: Path, force: bool) -> Manifest:
    """Verify the backup at ``source``, then restore it into the configured data dir and
    database; refuse a data dir or database that holds anything unless ``force``."""
    manifest = verify(source)
    kind = make_url(settings.database_url).get_backend_name()
    if kind != manifest.database:
        raise OpsUsageError(
            f"helpdesk.database: the backup holds a {manifest.database} database, "
            f"this configuration uses {kind}"
        )
    data_dir = settings.data_dir
    _refuse_running(data_dir)
    if not force and data_dir.is_dir() and any(data_dir.iterdir()):
        raise OpsUsageError(f"{data_dir}: the data dir is not empty (use --force to replace it)")
    data_dir.mkdir(parents=True, exist_ok=True)
    for folder in RESTORED_FOLDERS:
        shutil.rmtree(data_dir / folder, ignore_errors=True)
    _restore_database(settings, source, manifest, force)
    files = {
        rel: entry for rel, entry in manifest.files.items() if rel.split("/")[0] in RESTORED_FOLDERS
    }
    with progress(sum(int(e["size"]) for e in files.values()), "restoring") as bar:
        for relative in sorted(files):
            parts = relative.split("/")
            if parts[0] == "spool":  # waiting or claimed alike: waiting again
                target = data_dir / "spool" / "new" / parts[-1]
            else:
                target = data_dir.joinpath(*parts)
            copy_file(source / relative, target, bar)
    for folder in ("tmp", "new", "work"):
        (data_dir / "spool" / folder).mkdir(parents=True, exist_ok=True)
    fsync_dir(data_dir / "spool" / "new")
    return manifest


def _restore_database(settings: Settings, source: Path, manifest: Manifest, force: bool) -> None:
    engine = make_engine(settings.database_url)
    try:
        if manifest.database == "sqlite":
            target = Path(str(engine.url.database))
            engine.dispose()
            if target.exists() and not force:
                raise OpsUsageError(f"{target}: a database is already there (use --force)")
            for leftover in (Path(f"{target}-wal"), Path(f"{target}-shm")):
                leftover.unlink(missing_ok=True)
            temporary = target.with_name(f".{target.name}.restoring")
            copy_file(source / SQLITE_FILE, temporary)
            os.replace(temporary, target)
            fsync_dir(target.parent)
            return
        tables = inspect(engine).get_table_names()
        if tables and not force:
            raise OpsUsageError(
                f"helpdesk.database: the database already has {len(tables)} table(s) "
                "(use --force to replace them)"
            )
        pgtools.restore(engine, settings.database_url, source / PG_FILE, clean=bool(tables))
    finally:
        engine.dispose()


def _refuse_running(data_dir: Path) -> None:
    """Never restore under a running daemon: its lock file must be free."""
    lock = data_dir / "serve.lock"
    if not lock.exists():
        return
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OpsUsageError(
                f"{data_dir}: a postdesk serve is running on it; stop it first"
            ) from None
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_UN)
