"""The operations commands as the CLI calls them: each prints its result and returns a status."""

from __future__ import annotations

import argparse
import json

from postdesk.daemon.config import Settings
from postdesk.daemon.intake.spool import Spool
from postdesk.daemon.ops.backup import backup
from postdesk.daemon.ops.forget import forget
from postdesk.daemon.ops.manifest import Manifest, verify
from postdesk.daemon.ops.restore import restore
from postdesk.daemon.ops.status import gather_status, status_lines
from postdesk.daemon.store.db import make_engine, session_factory


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    """``postdesk backup DEST`` or ``postdesk backup --verify SRC``."""
    if args.verify:
        manifest = verify(args.path)
        print(f"backup {args.path} is intact: {_summary(manifest)}")
        return 0
    manifest = backup(settings, args.path)
    print(f"backup written to {args.path}: {_summary(manifest)}")
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    """``postdesk restore SRC [--force]``."""
    manifest = restore(settings, args.path, args.force)
    print(
        f"restored {args.path} into {settings.data_dir}: {_summary(manifest)}; "
        "start postdesk serve to process the restored spool"
    )
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """``postdesk status [--json]``: exit 1 when the database does not answer."""
    engine = make_engine(settings.database_url)
    try:
        status = gather_status(
            settings, session_factory(engine), Spool(settings.data_dir / "spool")
        )
    finally:
        engine.dispose()
    if args.json:
        print_json(status)
    else:
        print("\n".join(status_lines(status)))
    return 0 if status["database"] == "ok" else 1


def _summary(manifest: Manifest) -> str:
    counts = ", ".join(f"{n} {what}" for what, n in sorted(manifest.counts.items()))
    return (
        f"{manifest.database} database at schema {manifest.schema_revision or '?'}, {counts}, "
        f"{len(manifest.files)} files, made {manifest.created_at}"
    )


def print_json(data: object) -> None:
    """Print ``data`` as indented JSON."""
    print(json.dumps(data, indent=2, sort_keys=True))


def cmd_forget(settings: Settings, args: argparse.Namespace) -> int:
    """``postdesk forget EMAIL [--dry-run]``."""
    plan = forget(settings, args.email, args.dry_run)
    print(("would erase " if args.dry_run else "erased ") + plan.email + ":")
    for line in plan.lines():
        print(f"  {line}")
    return 0
