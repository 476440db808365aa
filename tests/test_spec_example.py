"""The configuration of the product contract's examples (SPEC sections 2 and 8), as the
acceptance checks write it, passes ``postdesk check``: its plugin exists, its escalation
group is only warned about. The IMAP mailbox and the relay it names are left out (nothing
listens there in a test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import free_port

SPEC_CONFIG = """
[helpdesk]
name = "Example Support"
address = "support@example.com"
tag = "Example"
database = "sqlite:///{data}/postdesk.db"
data_dir = "{data}"

[smtp]
listen = "127.0.0.1:{port}"
max_message_bytes = 26214400

[outbound]
relay = ""

[[agents]]
email = "alice@example.com"
name = "Alice"
groups = ["L1"]

[auth]
trusted_authserv_ids = ["mx.example.com"]
trusted_relays = ["127.0.0.1"]

[plugins]
enabled = ["postdesk.plugins.crm_csv"]

[sla]
check_interval = "30s"
warn_at = 0.8

[[sla.calendars]]
name = "office"
timezone = "Europe/Moscow"
hours = "Mon-Fri 10:00-19:00"
holidays = "RU"
closed = ["2026-12-31"]

[[sla.policies]]
name = "urgent"
match = {{ priority = "urgent" }}
calendar = "office"
first_response = "2h"
resolution = "1d"
escalate_to = "L2"
"""


def test_the_contracts_example_config_passes_check(tmp_path: Path) -> None:
    config = tmp_path / "postdesk.toml"
    config.write_text(SPEC_CONFIG.format(data=tmp_path / "data", port=free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    plugins: crm_csv" in done.stdout
    assert "note  sla: sla.policies[0].escalate_to: no agent is in group 'L2'" in done.stdout
