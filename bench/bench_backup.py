"""Backup benchmark: ``postdesk backup``, ``--verify`` and ``restore`` against a plain copy.

Builds a data dir on SQLite (``--tickets`` messages ingested, each with an attachment of
``--attachment-kb``, plus ``--spooled`` messages left waiting in the spool), then times, in the
same run: a plain recursive copy of the data dir (the baseline: no consistency, no checksums),
``postdesk backup``, ``postdesk backup --verify`` and ``postdesk restore`` into a fresh data dir.
Prints seconds, MB/s and each one's ratio to the baseline.

    python bench/bench_backup.py --tickets 300 --spooled 2000 --attachment-kb 200
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from postdesk.daemon.config import load_settings
from postdesk.daemon.intake.spool import Envelope, Spool


def mail(number: int, attachment_kb: int) -> bytes:
    """A customer mail with a unique Message-ID and a unique attachment."""
    message = EmailMessage()
    message["From"] = f"customer{number}@example.org"
    message["To"] = "support@example.com"
    message["Subject"] = f"request {number}"
    message["Message-ID"] = f"<bench{number}@example.org>"
    message.set_content(f"Hello, this is request {number}.\n" * 20)
    if attachment_kb:
        payload = os.urandom(attachment_kb * 1024)
        message.add_attachment(payload, maintype="application", subtype="pdf", filename="a.pdf")
    return message.as_bytes()


def postdesk(config: Path, *args: str) -> float:
    """Run a postdesk command; returns its wall-clock seconds."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), *args],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def write_config(root: Path) -> Path:
    config = root / "postdesk.toml"
    config.write_text(
        f'[helpdesk]\naddress = "support@example.com"\ndata_dir = "{root / "data"}"\n'
        'secret = "bench"\n'
    )
    return config


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=300)
    parser.add_argument("--spooled", type=int, default=2000)
    parser.add_argument("--attachment-kb", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="postdesk-bench-backup-") as scratch:
        base = Path(scratch)
        source, restored = base / "source", base / "restored"
        source.mkdir()
        restored.mkdir()
        config, restored_config = write_config(source), write_config(restored)
        mails = base / "mails"
        mails.mkdir()
        for number in range(args.tickets):
            (mails / f"{number}.eml").write_bytes(mail(number, args.attachment_kb))
        print(f"building: ingesting {args.tickets} messages ...", flush=True)
        postdesk(config, "ingest", *sorted(str(path) for path in mails.iterdir()))
        spool = Spool(load_settings(str(config), environ={}).data_dir / "spool")
        for number in range(args.spooled):
            envelope = Envelope("c@example.org", ("support@example.com",), "smtp", time.time())
            spool.write(mail(100_000 + number, 0), envelope)
        data = source / "data"
        size = folder_bytes(data)

        started = time.perf_counter()
        shutil.copytree(data, base / "plain-copy")
        baseline = time.perf_counter() - started
        timings = {
            "backup": postdesk(config, "backup", str(base / "backup")),
            "backup --verify": postdesk(config, "backup", "--verify", str(base / "backup")),
            "restore": postdesk(restored_config, "restore", str(base / "backup")),
        }
        print(
            f"data dir: {size / 1e6:.1f} MB ({args.tickets} tickets with "
            f"{args.attachment_kb} KB attachments, {args.spooled} spooled)"
        )
        print(f"{'plain copy (baseline)':<24} {baseline:7.2f} s  {size / 1e6 / baseline:7.1f} MB/s")
        for name, seconds in timings.items():
            print(
                f"{name:<24} {seconds:7.2f} s  {size / 1e6 / seconds:7.1f} MB/s  "
                f"x{seconds / baseline:.1f} baseline"
            )


if __name__ == "__main__":
    main()
