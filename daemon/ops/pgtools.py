"""The PostgreSQL client tools (``pg_dump``, ``pg_restore``): found, version-checked, and run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from postdesk.daemon.ops.errors import OpsError

INSTALL_HINT = "install the PostgreSQL client tools (Debian/Ubuntu: postgresql-client-{major})"


def libpq_uri(database_url: str) -> str:
    """The SQLAlchemy URL as a libpq connection URI (what the client tools take)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def server_major(engine: Engine) -> int:
    """The major version of the PostgreSQL server behind ``engine``."""
    with engine.connect() as connection:
        number = int(connection.execute(text("SHOW server_version_num")).scalar_one())
    return number // 10000


def tool(name: str, server: int) -> tuple[str, int]:
    """The path and major version of client tool ``name``; raises OpsError naming what is missing.

    A tool older than the server cannot read it (pg_dump refuses; pg_restore misreads newer
    archives), so that is refused here with the version to install.
    """
    path = shutil.which(name)
    if path is None:
        raise OpsError(f"{name} not found on PATH: {INSTALL_HINT.format(major=server)}")
    output = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"\)\s+(\d+)", output.stdout)
    if output.returncode != 0 or match is None:
        raise OpsError(f"{path} --version did not say its version: {output.stdout.strip()!r}")
    major = int(match.group(1))
    if major < server:
        raise OpsError(
            f"{path} is version {major}, older than the PostgreSQL {server} it must read: "
            + INSTALL_HINT.format(major=server)
        )
    return path, major


def dump(engine: Engine, database_url: str, target: Path) -> int:
    """Dump the database to ``target`` (custom format, one consistent snapshot); returns the
    pg_dump major version."""
    path, major = tool("pg_dump", server_major(engine))
    _run(
        [
            path,
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            f"--file={target}",
            f"--dbname={libpq_uri(database_url)}",
        ],
        "pg_dump",
    )
    return major


def restore(engine: Engine, database_url: str, archive: Path, clean: bool) -> None:
    """Load ``archive`` into the database, in one transaction; ``clean`` drops what is there."""
    path, _major = tool("pg_restore", server_major(engine))
    options = ["--clean", "--if-exists"] if clean else []
    _run(
        [
            path,
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            *options,
            f"--dbname={libpq_uri(database_url)}",
            str(archive),
        ],
        "pg_restore",
    )


def _run(command: list[str], name: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=None)
    if result.returncode != 0:
        detail = " ".join(result.stderr.split())[:500]
        raise OpsError(f"{name} failed (exit {result.returncode}): {detail}")
