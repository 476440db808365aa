"""``postdesk backup DEST``: a consistent copy of a data dir while the daemon keeps running.

Order is what makes it consistent. The spool is copied first, then the database, then the
attachments. A message accepted (250) before the backup began is in the spool or already in
the database then; if it leaves the spool while we copy, it left because its transaction
committed, so the database snapshot taken afterwards holds it. A message caught in both comes
back after a restore as a spool file whose dedupe key is already stored: it is recognised,
never stored twice. Attachment files are written before the transaction that references them
commits, so every file the snapshot needs exists when the attachments are copied.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from postdesk.daemon.config import Settings
from postdesk.daemon.intake.spool import OWNER_SEPARATOR, SUFFIX, fsync_dir
from postdesk.daemon.ops import pgtools
from postdesk.daemon.ops.errors import OpsError, OpsUsageError
from postdesk.daemon.ops.files import copy_file, is_blob_name, progress, sha256_file
from postdesk.daemon.ops.manifest import Manifest
from postdesk.daemon.store.db import make_engine
from postdesk.models.schema import QuarantineItem, Ticket

SQLITE_FILE = "database.sqlite3"
PG_FILE = "database.pgdump"
SPOOL_ROUNDS = 3  # a file absent from this many listings in a row has been processed


def backup(settings: Settings, dest: Path) -> Manifest:
    """Back up the data dir of ``settings`` into ``dest`` (absent or empty) and return the
    manifest written there last."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise OpsUsageError(f"{dest}: the backup destination must be absent or an empty folder")
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _backup(settings, dest)
    except BaseException:
        _discard(dest, created)  # a half-made backup must not be mistaken for one
        raise


def _backup(settings: Settings, dest: Path) -> Manifest:
    manifest = Manifest(
        database=make_url(settings.database_url).get_backend_name(),
        schema_revision="",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        versions={
            "postdesk": importlib.metadata.version("postdesk"),
            "python": platform.python_version(),
        },
        counts={},
    )
    manifest.counts["spool"] = _copy_spool(settings.data_dir / "spool", dest, manifest)
    _copy_database(settings, dest, manifest)
    manifest.counts["attachments"] = _copy_attachments(settings.data_dir, dest, manifest)
    manifest.write(dest)
    return manifest


def _discard(dest: Path, created: bool) -> None:
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _copy_spool(spool: Path, dest: Path, manifest: Manifest) -> int:
    """Copy every waiting or claimed message; a message that vanishes meanwhile was committed."""
    folders = (spool / "work", spool / "new")  # work first: a retry moves work -> new
    wanted = {_spool_id(name) for folder in folders for name in _listing(folder)}
    copied: set[str] = set()
    target = dest / "spool"
    target.mkdir()
    sizes = sum(_size(folder / name) for folder in folders for name in _listing(folder))
    with progress(sizes, "spool") as bar:
        for _round in range(SPOOL_ROUNDS):
            found = {
                _spool_id(name): folder / name for folder in folders for name in _listing(folder)
            }
            for spool_id in sorted(wanted - copied):
                source = found.get(spool_id)
                if source is None:
                    continue
                name = _unclaimed(source.name)  # restored as waiting, whoever had claimed it
                try:
                    digest = copy_file(source, target / name, bar)
                except FileNotFoundError:
                    continue  # moved on between the listing and the open: look again
                manifest.add(f"spool/{name}", digest, (target / name).stat().st_size)
                copied.add(spool_id)
            if copied >= wanted:
                break
    fsync_dir(target)
    return len(copied)


def _copy_database(settings: Settings, dest: Path, manifest: Manifest) -> None:
    """Snapshot the database into the backup and record its schema revision and counts."""
    engine = make_engine(settings.database_url)
    try:
        if manifest.database == "sqlite":
            target = dest / SQLITE_FILE
            manifest.versions["sqlite"] = sqlite3.sqlite_version
            _sqlite_snapshot(Path(str(engine.url.database)), target)
            copy = create_engine(f"sqlite:///{target}")  # plain: no WAL switch on the copy
            _database_facts(copy, manifest)  # of the snapshot itself
            copy.dispose()
        elif manifest.database == "postgresql":
            target = dest / PG_FILE
            manifest.versions["postgresql_server"] = str(pgtools.server_major(engine))
            _database_facts(engine, manifest)  # just before the dump: a lower bound
            manifest.versions["pg_dump"] = str(pgtools.dump(engine, settings.database_url, target))
        else:
            raise OpsUsageError(f"helpdesk.database: cannot back up a {manifest.database} database")
    finally:
        engine.dispose()
    with progress(target.stat().st_size, "database") as bar:
        manifest.add(target.name, sha256_file(target, bar), target.stat().st_size)


def _sqlite_snapshot(source: Path, target: Path) -> None:
    """One consistent copy through SQLite's online backup API (in one step: a step-wise copy
    restarts whenever the daemon writes, and it writes all the time)."""
    if not source.is_file():
        raise OpsError(f"{source}: the SQLite database does not exist (run postdesk init)")
    reader = sqlite3.connect(source, timeout=30)
    writer = sqlite3.connect(target)
    try:
        reader.backup(writer)
        writer.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        writer.commit()
    finally:
        writer.close()
        reader.close()
    with target.open("rb+") as handle:
        os.fsync(handle.fileno())


def _database_facts(engine: Engine, manifest: Manifest) -> None:
    with engine.connect() as connection:
        manifest.schema_revision = str(
            connection.execute(text("SELECT version_num FROM alembic_version")).scalar() or ""
        )
        tickets = select(func.count()).select_from(Ticket)
        held = (
            select(func.count()).select_from(QuarantineItem).where(QuarantineItem.status == "held")
        )
        manifest.counts["tickets"] = int(connection.execute(tickets).scalar_one())
        manifest.counts["quarantine"] = int(connection.execute(held).scalar_one())


def _copy_attachments(data_dir: Path, dest: Path, manifest: Manifest) -> int:
    root = data_dir / "attachments"
    blobs = (
        [p for p in root.rglob("*") if p.is_file() and is_blob_name(p.name)]
        if root.is_dir()
        else []
    )
    with progress(sum(_size(p) for p in blobs), "attachments") as bar:
        for blob in blobs:
            relative = f"attachments/{blob.relative_to(root).as_posix()}"
            digest = copy_file(blob, dest / relative, bar)
            manifest.add(relative, digest, (dest / relative).stat().st_size)
    return len(blobs)


def _listing(folder: Path) -> list[str]:
    try:
        return [name for name in os.listdir(folder) if name.endswith(SUFFIX)]
    except FileNotFoundError:
        return []


def _spool_id(name: str) -> str:
    """The message a spool file holds, the same in ``new/`` and, once claimed, in ``work/``."""
    return _unclaimed(name).removesuffix(SUFFIX).rpartition(".")[0]


def _unclaimed(name: str) -> str:
    """A spool file's name without the ``<pid>~`` a worker's claim puts in front of it."""
    return name.rpartition(OWNER_SEPARATOR)[2]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
