"""The backup manifest: what a backup holds, with a sha256 per file, and its verification."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postdesk.daemon.intake.spool import fsync_dir
from postdesk.daemon.ops.errors import OpsError
from postdesk.daemon.ops.files import progress, sha256_file

MANIFEST = "manifest.json"
FORMAT = 1


@dataclass
class Manifest:
    """The facts of one backup; ``files`` maps a relative path to its sha256 and size."""

    database: str  # sqlite | postgresql
    schema_revision: str
    created_at: str
    versions: dict[str, str]
    counts: dict[str, int]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    format: int = FORMAT

    def add(self, relative: str, sha256: str, size: int) -> None:
        """Record one file of the backup."""
        self.files[relative] = {"sha256": sha256, "size": size}

    def write(self, root: Path) -> None:
        """Write the manifest last and durably: its presence marks the backup complete."""
        temporary = root / f".{MANIFEST}.tmp"
        with temporary.open("w") as handle:
            json.dump(self.__dict__, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, root / MANIFEST)
        fsync_dir(root)


def read_manifest(root: Path) -> Manifest:
    """Load the manifest of the backup at ``root``; raises OpsError when absent or malformed."""
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text())
        manifest = Manifest(**data)
    except FileNotFoundError:
        raise OpsError(f"{path}: no manifest; not a backup, or an incomplete one") from None
    except (ValueError, TypeError) as error:
        raise OpsError(f"{path}: unreadable manifest: {error}") from None
    if manifest.format != FORMAT:
        raise OpsError(f"{path}: backup format {manifest.format}, this postdesk reads {FORMAT}")
    return manifest


def verify(root: Path) -> Manifest:
    """Check every file the manifest lists against its size and sha256; raise OpsError naming
    the first file that is missing or differs."""
    manifest = read_manifest(root)
    base = root.resolve()
    total = sum(int(entry["size"]) for entry in manifest.files.values())
    with progress(total, "verifying") as bar:
        for relative, entry in sorted(manifest.files.items()):
            path = (root / relative).resolve()
            if not path.is_relative_to(base):
                raise OpsError(f"{MANIFEST}: path outside the backup: {relative!r}")
            if not path.is_file():
                raise OpsError(f"{root / relative}: listed in the manifest but missing")
            if path.stat().st_size != entry["size"] or sha256_file(path, bar) != entry["sha256"]:
                raise OpsError(f"{root / relative}: checksum mismatch, the file is corrupted")
    return manifest
