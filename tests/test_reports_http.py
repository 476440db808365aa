"""``/reports`` on the operations listener of a real ``postdesk serve``, fetched by a real HTTP
client: the token (from the environment), the date range, and the page's figures."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

from tests.reportdata import AGENTS_TOML, build_fixture
from tests.support import Daemon, free_port, write_config

TOKEN = "s3cret-reports-token"
RANGE = "from=2026-10-19&to=2026-11-01&by=week"


def fetch(
    port: int, path: str, token: str | None = None, method: str = "GET"
) -> tuple[int, Message, str]:
    """One real HTTP request; the status, the headers and the body."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def start(tmp_path: Path, database_url: str, http: str, env: dict[str, str]) -> tuple[Daemon, int]:
    """A real daemon on the report fixture with ``[http]`` set as given."""
    build_fixture(database_url)
    port = free_port()
    extra = f'{AGENTS_TOML}\n[http]\nlisten = "127.0.0.1:{port}"\n{http}\n'
    daemon = Daemon(write_config(tmp_path, database_url, extra=extra), tmp_path, env=env)
    daemon.start()
    return daemon, port


def test_reports_page_behind_the_token(tmp_path: Path, database_url: str) -> None:
    daemon, port = start(
        tmp_path,
        database_url,
        'reports_token_env = "PD_TEST_REPORTS_TOKEN"',
        {"PD_TEST_REPORTS_TOKEN": TOKEN},
    )
    try:
        status, headers, _ = fetch(port, f"/reports?{RANGE}")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert fetch(port, f"/reports?{RANGE}", token=TOKEN[:-1])[0] == 401
        assert fetch(port, f"/reports?{RANGE}", token=TOKEN + "x")[0] == 401
        assert fetch(port, f"/reports?{RANGE}&token=wrong")[0] == 401

        status, headers, page = fetch(port, f"/reports?{RANGE}", token=TOKEN)
        assert status == 200, page
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["Cache-Control"] == "no-store"
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert "2026-10-19 to 2026-11-01" in page and "2026-W43" in page
        for chart in ("chart-volume", "chart-speed", "chart-sla", "chart-csat", "chart-backlog"):
            assert f'id="{chart}"' in page
        # The SLA table's routine first-response row: 3 tickets, 2 met, 1 breached, 67%.
        assert (
            '<td>routine</td><td>first response</td><td class="n">3</td><td class="n">2</td>'
            '<td class="n">1</td>' in page
        )

        status, _, by_day = fetch(port, f"/reports?{RANGE.replace('week', 'day')}&token={TOKEN}")
        assert status == 200 and "10-25" in by_day and "2026-W43" not in by_day

        status, _, body = fetch(port, "/reports?from=2026-11-02&to=2026-11-01", token=TOKEN)
        assert (status, body) == (400, "bad request: from 2026-11-02 is after to 2026-11-01\n")
        assert fetch(port, "/reports?from=yesterday", token=TOKEN)[0] == 400
        assert fetch(port, "/reports?by=year", token=TOKEN)[0] == 400
        assert fetch(port, f"/reports?{RANGE}", token=TOKEN, method="POST")[0] == 405
        assert fetch(port, "/healthz")[:1] == (200,)
    finally:
        daemon.stop()


def test_no_token_configured_means_no_page(tmp_path: Path, sqlite_url: str) -> None:
    daemon, port = start(tmp_path, sqlite_url, "", {})
    try:
        assert fetch(port, f"/reports?{RANGE}", token="")[0] == 404
        assert fetch(port, f"/reports?{RANGE}&token=anything")[0] == 404
        assert fetch(port, "/healthz")[0] == 200
    finally:
        daemon.stop()


def test_unset_token_variable_is_a_one_line_config_error(tmp_path: Path, sqlite_url: str) -> None:
    extra = f'\n[http]\nlisten = "127.0.0.1:{free_port()}"\nreports_token_env = "PD_NOT_SET_1"\n'
    config = write_config(tmp_path, sqlite_url, extra=extra)
    result = subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "postdesk serve: http.reports_token_env: environment variable PD_NOT_SET_1 is not set"
    )
    assert "Traceback" not in result.stderr
