"""Real headless Chromium for tests: dump the rendered DOM, take screenshots, print to PDF.

Debian's ``chromium`` is installed by .ci/test when missing. Outside CI a test skips with the
reason when there is no browser; under CI (``CI`` set) it fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)


def chromium_binary() -> str:
    """The Chromium executable; skips (or fails under CI) when there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    problem = "Chromium is not installed (Debian package chromium; .ci/test installs it as root)"
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; CI is set: the browser tests must run")
    pytest.skip(problem)


def run_chromium(workdir: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium once on ``url`` with a fresh profile under ``workdir``."""
    profile = workdir / f"chromium-profile-{len(list(workdir.glob('chromium-profile-*')))}"
    return subprocess.run(
        [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", *args, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        stdin=subprocess.DEVNULL,
    )


def console_messages(stderr: str) -> list[str]:
    """The page's console output, as Chromium logs it with --enable-logging=stderr."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]
