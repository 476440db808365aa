"""The one assertion every reliability case makes: P1 to P4 of RELIABILITY.md.

P1 no loss: every message that got a 250 is stored exactly once or quarantined.
P2 no duplicates: no inbound Message-ID is stored twice, no quarantine record twice.
P3 the daemon keeps running.
P4 no 5xx after a 250: no reply of the run was a permanent failure, unless the case expects it.
"""

from __future__ import annotations

import email
import email.policy
import os
import smtplib
from collections import Counter
from dataclasses import dataclass, field

from tests.support import HELPDESK, Daemon, make_mail, wait_until

SCALE = int(os.environ.get("RELIABILITY_SCALE", "1"))


def scaled(count: int) -> int:
    """A case's CI size, times ``RELIABILITY_SCALE`` (10 by hand for the heavy runs)."""
    return count * SCALE


@dataclass
class SendLog:
    """What a client saw: the Message-IDs that got a 250, and every reply code."""

    accepted: list[str] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)

    def send(self, port: int, raw: bytes, message_id: str, sender: str, to: str = HELPDESK) -> int:
        """Send one message in its own session, recording the reply to DATA (or the refusal)."""
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                client.sendmail(sender, [to], raw)
        except smtplib.SMTPResponseException as error:
            self.codes.append(error.smtp_code)
            return error.smtp_code
        except smtplib.SMTPRecipientsRefused as error:
            code = next(iter(error.recipients.values()))[0]
            self.codes.append(code)
            return code
        except OSError:
            self.codes.append(0)  # connection refused or cut: the client retries later
            return 0
        self.codes.append(250)
        self.accepted.append(message_id)
        return 250

    def send_new(self, port: int, label: str, n: int, **headers: str) -> int:
        """Send a fresh message from customer ``n`` with Message-ID ``<label-n@example.org>``."""
        message_id = f"<{label}-{n}@example.org>"
        sender = f"customer{n}@example.org"
        raw = make_mail(
            subject=f"{label} {n}", sender=sender, message_id=message_id, headers=headers or None
        )
        return self.send(port, raw, message_id, sender)


def quarantined_ids(daemon: Daemon) -> list[str]:
    """Message-IDs of the quarantine records."""
    ids = []
    for item in daemon.quarantined():
        parsed = email.message_from_bytes(item.raw, policy=email.policy.compat32)
        ids.append(str(parsed.get("Message-ID", "")).strip())
    return ids


def assert_p1_to_p4(
    daemon: Daemon,
    log: SendLog,
    *,
    timeout: float = 120.0,
    allow_5xx: bool = False,
    running: bool = True,
) -> dict[str, int]:
    """Wait until every accepted message is settled, then check P1-P4; returns the figures."""

    def settled() -> bool:
        done = set(daemon.inbound_message_ids()) | set(quarantined_ids(daemon))
        return set(log.accepted) <= done and not daemon.spool_files()

    wait_until(settled, timeout=timeout, what=f"{len(log.accepted)} accepted messages settled")
    stored = Counter(daemon.inbound_message_ids())
    held = Counter(quarantined_ids(daemon))
    lost = [m for m in log.accepted if not stored[m] and not held[m]]
    duplicated = [m for m in log.accepted if stored[m] + held[m] > 1]
    assert not lost, f"P1: {len(lost)} accepted message(s) lost: {lost[:5]}"
    assert not duplicated, f"P2: {len(duplicated)} duplicated: {duplicated[:5]}"
    if running:
        assert daemon.process is not None and daemon.process.poll() is None, "P3: daemon exited"
    if not allow_5xx:
        permanent = [c for c in log.codes if c >= 500]
        assert not permanent, f"P4: {len(permanent)} permanent failure(s): {permanent[:5]}"
    return {
        "sent": len(log.codes),
        "250": len(log.accepted),
        "stored": sum(1 for m in log.accepted if stored[m]),
        "quarantined": sum(1 for m in log.accepted if held[m]),
        "duplicates": len(duplicated),
        "lost": len(lost),
    }
