"""The built wheel works on its own: imports as postdesk.*, ships templates and migrations."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support import make_mail

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"daemon": "daemon", "models": "models", "plugins": "plugins", "templates": "templates"}
SHIPPED_SUFFIXES = {".py", ".j2", ".mako", ".typed"}


def source_files() -> set[str]:
    """Every file of the installed folders as its path inside the wheel (postdesk/...)."""
    found = set()
    for folder, package in SHIPPED.items():
        for path in (REPO / folder).rglob("*"):
            if (
                path.is_file()
                and path.suffix in SHIPPED_SUFFIXES
                and "__pycache__" not in path.parts
            ):
                found.add(f"postdesk/{package}/{path.relative_to(REPO / folder).as_posix()}")
    return found


def test_wheel_installs_postdesk_packages_only_and_runs(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("postdesk-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.startswith("postdesk-")}
    assert top_level == {"postdesk"}, "no generic top-level names like daemon or models"
    assert "postdesk/templates/customer/acknowledgement.txt.j2" in names
    assert any(n.startswith("postdesk/models/migrations/versions/0001") for n in names)
    missing = source_files() - set(names)
    assert not missing, (
        f"not in the wheel (a package missing from pyproject's packages?): {missing}"
    )

    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    (tmp_path / "mail.eml").write_bytes(make_mail())
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-c", "import postdesk.daemon, sys; print(postdesk.daemon.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert result.stdout.startswith(str(target)), "the wheel's copy is the one imported"
    result = subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "ingest", "mail.eml"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert "1 stored (1 new tickets)" in result.stdout, result.stderr
    assert (tmp_path / "postdesk-data" / "postdesk.db").is_file()
