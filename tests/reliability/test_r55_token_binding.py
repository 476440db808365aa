"""Issue 13, item 8 (R-55 hardened): an agent's reply token is bound in time and in scope.

A token is the Message-ID of the agent's notification; anyone the agent copies holds it. It
authenticates only younger than ``auth.token_max_age_days``, only for its own ticket, never for
``#merge``, and never against trusted Authentication-Results saying DKIM/SPF failed.
"""

from __future__ import annotations

import time
from email.message import EmailMessage
from pathlib import Path

from tests.agentmail import (
    ALICE,
    MX,
    OUTSIDE,
    daemon_with_agents,
    notifications,
    plain_text,
    send_via,
    tokens,
)
from tests.support import Daemon, SmtpSink, make_mail, send, wait_until

DAY = 86_400.0


def _text(message: EmailMessage) -> str:
    return " ".join(plain_text(message).split())


def _alerts(sink: SmtpSink) -> list[EmailMessage]:
    return [m for m in sink.to(ALICE) if "Unverified mail from agent address" in m["Subject"]]


def _agent_mail(body: str, subject: str, in_reply_to: str, auth: str | None = None) -> bytes:
    headers = {"In-Reply-To": in_reply_to, "References": in_reply_to}
    if auth:
        headers["Authentication-Results"] = auth
    return make_mail(subject=subject, sender=ALICE, body=body, headers=headers)


def _two_tickets(daemon: Daemon, sink: SmtpSink) -> tuple[EmailMessage, EmailMessage]:
    """Ticket 1 from carol, ticket 2 from dan; Alice's notification of each."""
    send(daemon.port, make_mail(message_id="<aaa-carol@example.org>"))
    first = wait_until(lambda: notifications(sink, ALICE, 1), what="notification 1")[0]
    raw = make_mail(subject="Invoice", sender="dan@example.org", message_id="<aaa-dan@x.org>")
    send(daemon.port, raw, sender="dan@example.org")
    second = wait_until(lambda: notifications(sink, ALICE, 2), what="notification 2")[0]
    return first, second


def _state(daemon: Daemon, number: int) -> tuple[str, str, int | None]:
    ticket = daemon.ticket(number)
    return ticket["status"], ticket["priority"], ticket["merged_into"]


def test_r55_token_merge_and_other_tickets_need_authentication_results(
    tmp_path: Path, database_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, database_url, sink) as daemon:
        first, _second = _two_tickets(daemon, sink)
        # The leaked token of ticket 1 with "#merge 2": the merge is refused, told to the agent.
        leaked = _agent_mail(
            "#merge 2\n#priority high", f"Re: {first['Subject']}", first["Message-ID"]
        )
        assert send_via(daemon.port, leaked, ALICE, OUTSIDE) == 250
        wait_until(lambda: _state(daemon, 1)[1] == "high", what="#priority on its own ticket")
        assert _state(daemon, 1) == ("open", "high", None), "no merge on a token alone"
        assert "ALICE" not in str(daemon.ticket(2)["participants"]).upper()
        wait_until(
            lambda: any("needs Authentication-Results" in _text(m) for m in sink.to(ALICE)),
            what="the command error back to Alice",
        )

        # A valid token for ticket 2 (one not stored, so threading cannot pick ticket 2 by it)
        # on a reply threaded into ticket 1 by referencing carol's mail: not believed there.
        token_2 = tokens().mint(2, ALICE)
        stray = _agent_mail("#status closed", "Re: printer", "<aaa-carol@example.org>")
        stray = stray.replace(
            b"References: <aaa-carol@example.org>",
            f"References: {token_2} <aaa-carol@example.org>".encode(),
        )
        assert send_via(daemon.port, stray, ALICE, OUTSIDE) == 250
        wait_until(lambda: "does not cover ticket #1" in daemon.log(), what="scope refusal")
        wait_until(lambda: _alerts(sink), what="unverified-agent alert")
        assert _state(daemon, 1)[0] == "open" and _state(daemon, 2)[0] != "closed"

        # The same with Authentication-Results from our MX: the merge runs.
        auth = "mx.example.com; dkim=pass header.d=example.com"
        merge = _agent_mail("#merge 2", f"Re: {first['Subject']}", first["Message-ID"], auth)
        assert send_via(daemon.port, merge, ALICE, MX) == 250
        wait_until(lambda: _state(daemon, 1)[2] == 2, what="merge with DKIM pass")


def test_r55_token_expires_and_yields_to_a_trusted_dkim_fail(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        first, _second = _two_tickets(daemon, sink)
        subject = f"Re: {first['Subject']}"
        old = tokens().mint(1, ALICE, now=time.time() - 31 * DAY)
        assert (
            send_via(daemon.port, _agent_mail("#priority low", subject, old), ALICE, OUTSIDE) == 250
        )
        wait_until(lambda: "expired: minted 31 days ago" in daemon.log(), what="expiry")
        wait_until(lambda: _alerts(sink), what="alert on the expired token")

        failing = "mx.example.com; dkim=fail header.d=example.com; spf=fail smtp.mailfrom=alice@example.com"
        raw = _agent_mail("#priority low", subject, first["Message-ID"], failing)
        assert send_via(daemon.port, raw, ALICE, MX) == 250
        wait_until(lambda: "says dkim=fail for example.com" in daemon.log(), what="forged verdict")
        wait_until(lambda: len(_alerts(sink)) >= 2, what="alert on the contradicted token")
        assert _state(daemon, 1)[1] == "normal", "neither token ran a command"

        fresh = tokens().mint(1, ALICE, now=time.time() - 29 * DAY)
        assert (
            send_via(daemon.port, _agent_mail("#priority low", subject, fresh), ALICE, OUTSIDE)
            == 250
        )
        wait_until(lambda: _state(daemon, 1)[1] == "low", what="a 29-day-old token still works")
