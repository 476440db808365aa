"""End to end (R-55, R-56): mail in an agent's name runs commands only when it is authenticated.

Every forged case carries commands and text for the customer; afterwards the ticket must be
unchanged, the customer must have received nothing, and every agent must have an alert.
"""

from __future__ import annotations

from email.message import EmailMessage
from functools import partial
from pathlib import Path

from tests.agentmail import (
    AGENTS,
    ALICE,
    BOB,
    MX,
    OUTSIDE,
    daemon_with_agents,
    events,
    notifications,
    plain_text,
    reply_to,
    send_via,
    wait_mails,
)
from tests.support import CUSTOMER, Daemon, SmtpSink, make_mail, send, wait_until

COMMANDS = "#status closed\n#priority urgent\n#assign me\n#note\nFORGED text for the customer"
PASS_ALL = (
    "dkim=pass header.d=example.com; spf=pass smtp.mailfrom=alice@example.com; "
    "dmarc=pass header.from=example.com"
)


def _forged_token(message_id: str) -> str:
    """``message_id`` (one of ours) with the last character of its MAC changed."""
    local, _, domain = message_id.strip("<>").partition("@")
    flipped = local[:-1] + ("0" if local[-1] != "0" else "1")
    return f"<{flipped}@{domain}>"


def _tagged(headers: dict[str, str] | None = None) -> bytes:
    return make_mail(
        subject="Re: [Example #1] Printer on fire", sender=ALICE, body=COMMANDS, headers=headers
    )


def _below_fail() -> bytes:
    """Our MX's header on top says fail; the sender's own "pass" sits below it."""
    forged = _tagged({"Authentication-Results": f"mx.example.com; {PASS_ALL}"})
    return b"Authentication-Results: mx.example.com; dkim=fail header.d=example.com\r\n" + forged


def _alerts(sink: SmtpSink, agent: str) -> list[EmailMessage]:
    return [m for m in sink.to(agent) if "Unverified mail from agent address" in m["Subject"]]


def _all_alerted(sink: SmtpSink, count: int) -> bool:
    return all(len(_alerts(sink, agent)) == count for agent in AGENTS)


def _assert_untouched(daemon: Daemon, sink: SmtpSink) -> None:
    ticket = daemon.ticket(1)
    assert (ticket["status"], ticket["priority"], ticket["assignee"]) == ("new", "normal", None)
    assert len(sink.to(CUSTOMER)) == 1, "the customer got nothing but the acknowledgement"
    assert all("FORGED" not in m.as_string() for m in sink.to(CUSTOMER))


def test_r55_forged_agent_mail_runs_nothing_relays_nothing_and_alerts(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        send(daemon.port, make_mail())
        to_alice = wait_until(lambda: notifications(sink, ALICE, 1), what="notification")[0]
        to_bob = wait_until(lambda: notifications(sink, BOB, 1), what="notification")[0]
        forged_id = _forged_token(to_alice["Message-ID"])
        cases = [
            ("no Authentication-Results", _tagged(), OUTSIDE),
            (
                "untrusted authserv-id",
                _tagged({"Authentication-Results": f"evil.example.net; {PASS_ALL}"}),
                MX,
            ),
            (
                "trusted id, untrusted peer",
                _tagged({"Authentication-Results": f"mx.example.com; {PASS_ALL}"}),
                OUTSIDE,
            ),
            (
                "trusted, nothing aligned",
                _tagged(
                    {
                        "Authentication-Results": "mx.example.com; dkim=pass header.d=evil.test; spf=pass smtp.mailfrom=x@evil.test"
                    }
                ),
                MX,
            ),
            ("forged below our MX's verdict", _below_fail(), MX),
            ("forged token", _tagged({"In-Reply-To": forged_id, "References": forged_id}), OUTSIDE),
            ("another agent's token", reply_to(to_bob, COMMANDS, ALICE), OUTSIDE),
        ]
        for count, (what, raw, peer) in enumerate(cases, start=1):
            assert send_via(daemon.port, raw, ALICE, peer) == 250
            wait_until(partial(_all_alerted, sink, count), what=f"alerts: {what}")
            _assert_untouched(daemon, sink)

        reasons = [plain_text(m) for m in _alerts(sink, BOB)]
        assert "no Authentication-Results and no token" in reasons[0]
        assert "no Authentication-Results from a trusted authserv-id" in reasons[1]
        assert f"not believed from SMTP peer {OUTSIDE}" in reasons[2]
        assert "no DKIM, SPF or DMARC pass aligned with From" in reasons[3]
        assert "no DKIM, SPF or DMARC pass aligned with From" in reasons[4]
        assert "FORGED text for the customer" in reasons[6]
        stored = [m for t in daemon.tickets() for m in t["messages"] if m["author"] == ALICE]
        assert len(stored) == len(cases), "forged mail is kept, as customer mail"
        assert all(e["actor"] != ALICE for e in _commands_logged(daemon))


def _commands_logged(daemon: Daemon) -> list[dict[str, str]]:
    kinds = {"status", "priority", "assigned", "note"}
    return [
        {"actor": actor, "kind": kind}
        for t in daemon.tickets()
        for actor, kind, _ in events(daemon, t["number"])
        if kind in kinds
    ]


def test_r55_trusted_authentication_results_and_ingest_run_commands(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        send(daemon.port, make_mail())
        wait_until(lambda: notifications(sink, ALICE, 1), what="notification")
        legit = make_mail(
            subject="Re: [Example #1] Printer on fire",
            sender=ALICE,
            body="#priority high\nA technician is coming.",
            headers={
                "Authentication-Results": "mx.example.com; dkim=pass header.d=example.com",
                "X-Postdesk-Agent": "bob@example.com",
            },
        )
        assert send_via(daemon.port, legit, ALICE, MX) == 250
        relayed = wait_mails(sink, CUSTOMER, 2, "relayed reply")[1]
        assert "A technician is coming." in plain_text(relayed)
        assert daemon.ticket(1)["priority"] == "high"

        eml = tmp_path / "from-imap-export.eml"
        eml.write_bytes(
            make_mail(
                subject="Re: [Example #1] Printer on fire",
                sender=ALICE,
                body="#assign me",
                headers={
                    "Authentication-Results": "mx.example.com; spf=pass smtp.mailfrom=example.com"
                },
            )
        )
        daemon.cli("ingest", str(eml), check=False)
        wait_until(lambda: daemon.ticket(1)["assignee"] == ALICE, what="#assign from ingest")
        assert all(_alerts(sink, agent) == [] for agent in AGENTS)


def test_r55_commands_in_customer_mail_are_only_text(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        trusted = "mx.example.com; dkim=pass header.d=example.org"
        send(daemon.port, make_mail())
        reply = make_mail(
            subject="Re: [Example #1] Printer on fire",
            body="#status solved\n#assign me\nplease hurry",
            headers={"Authentication-Results": trusted, "X-Loop-Agent": ALICE},
        )
        assert send_via(daemon.port, reply, CUSTOMER, MX) == 250
        wait_until(lambda: len(notifications(sink, BOB, 1)) == 2, what="reply notification")
        ticket = daemon.ticket(1)
        assert (ticket["status"], ticket["assignee"]) == ("new", None)
        assert "#status solved" in plain_text(notifications(sink, BOB, 1)[1])
