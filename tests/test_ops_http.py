"""The health and metrics listener of a real daemon, scraped by a real HTTP client; status."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.relay import TcpRelay
from tests.support import Daemon, free_port, make_mail, send, wait_until, write_config


def http_get(port: int, path: str) -> tuple[int, str]:
    """GET over a real HTTP connection; returns the status and the body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def start_with_http(tmp_path: Path, database_url: str) -> tuple[Daemon, int]:
    port = free_port()
    config = write_config(tmp_path, database_url, extra=f'\n[http]\nlisten = "127.0.0.1:{port}"\n')
    daemon = Daemon(config, tmp_path)
    daemon.start()
    return daemon, port


def test_metrics_parse_and_count_what_happened(tmp_path: Path, sqlite_url: str) -> None:
    daemon, port = start_with_http(tmp_path, sqlite_url)
    try:
        assert http_get(port, "/healthz") == (200, "ok\n")
        for number in range(3):
            assert send(daemon.port, make_mail(message_id=f"<h{number}@example.org>"))[0] == 250
        assert send(daemon.port, make_mail(message_id="<h0@example.org>"))[0] == 250  # again
        wait_until(lambda: not daemon.spool_files(), what="spool drained")
        wait_until(
            lambda: len(daemon.outbox()) == 3 and all(o.status == "sent" for o in daemon.outbox()),
            what="acks sent",
        )
        status, body = http_get(port, "/metrics")
        assert status == 200
        found = samples(body)
        assert found[("postdesk_messages_received_total", (("channel", "smtp"),))] == 4
        assert found[("postdesk_messages_processed_total", (("outcome", "stored"),))] == 3
        assert found[("postdesk_messages_processed_total", (("outcome", "duplicate"),))] == 1
        assert found[("postdesk_processing_seconds_count", ())] == 4
        assert found[("postdesk_processing_seconds_bucket", (("le", "+Inf"),))] == 4
        assert found[("postdesk_processing_seconds_sum", ())] > 0
        assert found[("postdesk_spool_depth", ())] == 0
        assert found[("postdesk_spool_oldest_age_seconds", ())] == 0
        assert found[("postdesk_outbox_depth", ())] == 0
        assert found[("postdesk_outbox_send_failures", ())] == 0
        assert found[("postdesk_quarantine_size", ())] == 0
        assert found[("postdesk_database_up", ())] == 1
        assert found[("postdesk_worker_alive", ())] == 1
        assert http_get(port, "/readyz") == (200, "ready\n")
        assert http_get(port, "/nope")[0] == 404

        status_json = json.loads(daemon.cli("status", "--json").stdout)
        assert status_json["daemon_running"] is True
        assert status_json["processed"] == {"duplicate": 1, "stored": 3}
        assert status_json["outbox"] == {"failed": 0, "pending": 0, "retrying": 0}
        assert status_json["spool"]["depth"] == 0 and status_json["database"] == "ok"
        text = daemon.cli("status").stdout
        assert "daemon      running" in text and "3 stored" in text and "quarantine  0 held" in text
    finally:
        daemon.stop()
    assert json.loads(daemon.cli("status", "--json").stdout)["daemon_running"] is False


def test_status_shows_a_stuck_spool_file_with_its_age(tmp_path: Path, sqlite_url: str) -> None:
    daemon = Daemon(write_config(tmp_path, sqlite_url), tmp_path)
    daemon.cli("init")
    spool_new = daemon.settings.data_dir / "spool" / "new"
    spool_new.mkdir(parents=True, exist_ok=True)
    an_hour_ago = int((time.time() - 3600) * 1e9)
    (spool_new / f"{an_hour_ago:020d}-aaaaaaaaaaaa.0.msg").write_bytes(b"{}\n")
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert status["daemon_running"] is False
    assert status["spool"]["depth"] == 1
    assert 3590 < status["spool"]["oldest_age_seconds"] < 3700
    daemon.stop()


@pytest.mark.postgres
def test_readyz_turns_unready_when_the_database_goes_away(
    tmp_path: Path, postgres_url: str
) -> None:
    proxy = TcpRelay(5432)
    proxy.start()
    proxied = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    daemon, port = start_with_http(tmp_path, proxied)
    try:
        assert http_get(port, "/readyz") == (200, "ready\n")
        proxy.pause()
        status, body = http_get(port, "/readyz")
        assert status == 503 and "database does not answer" in body
        assert http_get(port, "/healthz")[0] == 200  # the daemon itself is alive
        found = samples(http_get(port, "/metrics")[1])
        assert found[("postdesk_database_up", ())] == 0
        assert ("postdesk_outbox_depth", ()) not in found
        proxy.resume()
        wait_until(lambda: http_get(port, "/readyz")[0] == 200, timeout=30, what="ready again")
        assert samples(http_get(port, "/metrics")[1])[("postdesk_database_up", ())] == 1
    finally:
        daemon.stop()
        proxy.stop()


def test_http_listen_is_checked(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path, sqlite_url, extra='\n[http]\nlisten = "nonsense"\n')
    run = subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "http.listen" in run.stderr
