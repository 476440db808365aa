"""What a command's process imports at start: Alembic, holidays, scikit-learn, skops and numpy
only when they are needed (each costs tens to hundreds of milliseconds per process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import write_config

HEAVY = ("alembic", "holidays", "sklearn", "skops", "numpy")


def _loaded_after(code: str) -> list[str]:
    """The modules of HEAVY loaded after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_cli_and_runtime_load_none_of_them() -> None:
    assert _loaded_after("import postdesk.daemon.cli, postdesk.daemon.runtime") == []


def test_serve_loads_none_of_them_before_a_report_is_asked_for() -> None:
    assert _loaded_after("import postdesk.daemon.cli, postdesk.daemon.serve") == []


def test_check_without_models_loads_none_of_them(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path, sqlite_url)
    code = f"from postdesk.daemon.cli import main\nassert main(['--config', {str(config)!r}, 'check']) == 0"
    assert _loaded_after(code) == []
