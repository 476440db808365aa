"""What a command's process imports at start: Alembic, holidays, scikit-learn, skops and numpy
only when they are needed (each costs tens to hundreds of milliseconds per process), and
charset-normalizer only for mail whose charset must be guessed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import write_config

HEAVY = ("alembic", "holidays", "sklearn", "skops", "numpy")


def _loaded_after(code: str, modules: tuple[str, ...] = HEAVY) -> list[str]:
    """The ``modules`` (HEAVY) loaded after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {modules!r} if m in sys.modules)))\n"
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


def _ingest(tmp_path: Path, sqlite_url: str, body: bytes) -> str:
    """Code that ingests one mail with ``body`` (declared charset: none) and checks the exit."""
    config = write_config(tmp_path, sqlite_url)
    mail = tmp_path / "one.eml"
    mail.write_bytes(
        b"From: ana@example.org\r\nTo: support@example.com\r\nSubject: hi\r\n"
        b"Message-ID: <one@example.org>\r\n\r\n" + body
    )
    argv = ["--config", str(config), "ingest", str(mail)]
    return f"from postdesk.daemon.cli import main\nassert main({argv!r}) == 0"


def test_ingest_of_mail_that_decodes_does_not_load_the_charset_detector(
    tmp_path: Path, sqlite_url: str
) -> None:
    code = _ingest(tmp_path, sqlite_url, "Caf\u00e9 ok\r\n".encode())
    assert _loaded_after(code, ("charset_normalizer",)) == []


def test_mail_that_needs_a_guess_loads_it(tmp_path: Path, sqlite_url: str) -> None:
    code = _ingest(
        tmp_path,
        sqlite_url,
        "\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439\u0442\u0435\r\n".encode(
            "koi8-r"
        ),
    )
    assert _loaded_after(code, ("charset_normalizer",)) == ["charset_normalizer"]
