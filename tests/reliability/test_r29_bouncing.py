"""R-29 / R-38: a permanent refusal or a delivery report about our mail marks the contact
bouncing; automatic mail to it stops; ``ticket --json`` shows it; a reply to our mail clears it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.reliability.procs import running_daemon
from tests.reliability.properties import SendLog, assert_p1_to_p4
from tests.support import HELPDESK, Daemon, SmtpSink, make_mail, wait_until

BAD = "bad@cust.test"
GOOD = "good@cust.test"


class RefusingSink(SmtpSink):
    """The relay: refuses RCPT TO the bad address with 550 5.1.1, accepts the rest."""

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Refuse the bad address for good."""
        if address.lower() == BAD:
            return "550 5.1.1 <bad@cust.test>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"


@pytest.fixture
def daemon(tmp_path: Path, database_url: str, relay: RefusingSink) -> Iterator[Daemon]:
    """The daemon, relaying through ``relay``."""
    with running_daemon(tmp_path, database_url, relay=f"smtp://127.0.0.1:{relay.port}") as running:
        yield running


@pytest.fixture
def relay() -> Iterator[RefusingSink]:
    sink = RefusingSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


def _json(daemon: Daemon, number: int) -> dict[str, object]:
    return dict(json.loads(daemon.cli("ticket", str(number), "--json").stdout))


def _dsn(original_id: str, recipient: str) -> bytes:
    """A Postfix-style delivery report naming our mail by Original-Message-ID."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.cust.test>\r\n"
        f"To: {HELPDESK}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-29@mx.cust.test>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.cust.test\r\nOriginal-Message-ID: {original_id}\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.2.1\r\n"
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {HELPDESK}\r\nTo: {recipient}\r\nMessage-ID: {original_id}\r\n"
        "--b--\r\n"
    ).encode()


def test_r29_r38_permanent_refusal_and_dsn_mark_bouncing_until_a_reply(
    daemon: Daemon, relay: RefusingSink
) -> None:
    log = SendLog()
    assert (
        log.send(
            daemon.port,
            make_mail(sender=BAD, message_id="<b1@cust.test>"),
            "<b1@cust.test>",
            BAD,
        )
        == 250
    )
    wait_until(lambda: any(r.status == "failed" for r in daemon.outbox()), what="ack refused")
    wait_until(lambda: _json(daemon, 1)["bouncing"] == [BAD], what="bad marked bouncing")

    raw = make_mail(subject="Another one", sender=BAD, message_id="<b2@cust.test>")
    assert log.send(daemon.port, raw, "<b2@cust.test>", BAD) == 250
    wait_until(lambda: len(daemon.tickets()) == 2, what="second ticket")
    assert [r.recipient for r in daemon.outbox()] == [BAD], "no second ack to a bouncing address"
    assert "not sent: the address is bouncing" in daemon.log()

    raw = make_mail(sender=GOOD, message_id="<g1@cust.test>")
    assert log.send(daemon.port, raw, "<g1@cust.test>", GOOD) == 250
    wait_until(lambda: relay.to(GOOD), what="ack to the good address")
    ack_id = relay.to(GOOD)[0]["Message-ID"]
    assert log.send(daemon.port, _dsn(ack_id, GOOD), "<dsn-29@mx.cust.test>", "") == 250
    wait_until(lambda: _json(daemon, 3)["bouncing"] == [GOOD], what="DSN marks good bouncing")
    assert len(daemon.tickets()) == 3, "the report joins the ticket of the mail it reports"
    assert not daemon.quarantined()

    reply = make_mail(
        subject="Re: your ticket",
        sender=GOOD,
        message_id="<g2@cust.test>",
        headers={"In-Reply-To": ack_id},
    )
    assert log.send(daemon.port, reply, "<g2@cust.test>", GOOD) == 250
    wait_until(lambda: _json(daemon, 3)["bouncing"] == [], what="a reply clears it")
    assert _json(daemon, 1)["bouncing"] == [BAD]
    assert_p1_to_p4(daemon, log)


def test_r29_forged_dsn_cannot_mark_strangers_bouncing(daemon: Daemon, relay: RefusingSink) -> None:
    log = SendLog()
    ack_id = _acknowledged(daemon, log, relay)
    forged = _dsn(ack_id, "victim@elsewhere.test")
    assert log.send(daemon.port, forged, "<dsn-29@mx.cust.test>", "") == 250
    assert_p1_to_p4(daemon, log)
    assert _json(daemon, 1)["bouncing"] == []
    assert len(daemon.tickets()) == 1


def _acknowledged(daemon: Daemon, log: SendLog, relay: RefusingSink) -> str:
    """Send GOOD's first mail; the Message-ID of its acknowledgement, once relayed."""
    raw = make_mail(sender=GOOD, message_id="<g1@cust.test>")
    assert log.send(daemon.port, raw, "<g1@cust.test>", GOOD) == 250
    wait_until(lambda: relay.to(GOOD), what="ack")
    return str(relay.to(GOOD)[0]["Message-ID"])


def _ids(daemon: Daemon, number: int) -> list[str]:
    return [message["message_id"] for message in daemon.ticket(number)["messages"]]


def _plain_bounce(
    message_id: str, subject: str, explanation: str, original_id: str, recipient: str
) -> bytes:
    """A bounce without a report, as qmail and Exim send them: text naming the failed address,
    then a copy of our mail's header section."""
    return (
        f"From: MAILER-DAEMON@mx.cust.test\r\nTo: {HELPDESK}\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n\r\n{explanation}\r\n\r\n"
        "--- Below this line is a copy of the message.\r\n\r\n"
        f"Return-Path: <{HELPDESK}>\r\nFrom: {HELPDESK}\r\nTo: {recipient}\r\n"
        f"Subject: [Example #1] We received your request\r\nMessage-ID: {original_id}\r\n"
        "\r\nHello\r\n"
    ).encode()


def test_r29_bounce_without_a_report_joins_its_ticket_and_marks_only_for_good(
    daemon: Daemon, relay: RefusingSink
) -> None:
    log = SendLog()
    ack_id = _acknowledged(daemon, log, relay)

    warning = _plain_bounce(
        "<w@mx.cust.test>",
        "Warning: message 1tA2B3-000Xyz-Q4 delayed 24 hours",
        "A message that you sent has not yet been delivered to one or more of its\r\n"
        f"recipients after more than 24 hours on the queue.\r\n\r\n  {GOOD}\r\n\r\n"
        "No action is required on your part. Delivery attempts will continue.",
        ack_id,
        GOOD,
    )
    assert log.send(daemon.port, warning, "<w@mx.cust.test>", "") == 250
    wait_until(lambda: "<w@mx.cust.test>" in _ids(daemon, 1), what="warning joins ticket 1")
    assert _json(daemon, 1)["bouncing"] == [], "a delay warning marks nothing"

    bounce = _plain_bounce(
        "<q@mx.cust.test>",
        "failure notice",
        "Hi. This is the qmail-send program at mx.cust.test.\r\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
        f"<{GOOD}>:\r\nSorry, no mailbox here by that name. (#5.1.1)",
        ack_id,
        GOOD,
    )
    assert log.send(daemon.port, bounce, "<q@mx.cust.test>", "") == 250
    wait_until(lambda: _json(daemon, 1)["bouncing"] == [GOOD], what="the bounce marks it")
    assert len(daemon.tickets()) == 1, "no ticket from MAILER-DAEMON"
    assert _ids(daemon, 1) == ["<g1@cust.test>", ack_id, "<w@mx.cust.test>", "<q@mx.cust.test>"]
    assert [r.recipient for r in daemon.outbox()] == [GOOD], "nothing answers a bounce"

    stranger = _plain_bounce(
        "<s@mx.cust.test>",
        "failure notice",
        f"<{GOOD}>:\r\nSorry, no mailbox here by that name. (#5.1.1)",
        "<not-ours@elsewhere.test>",
        GOOD,
    )
    assert log.send(daemon.port, stranger, "<s@mx.cust.test>", "") == 250
    wait_until(lambda: len(daemon.tickets()) == 2, what="a bounce of other mail is stored")
    assert [r.recipient for r in daemon.outbox()] == [GOOD], "and not answered"
    assert_p1_to_p4(daemon, log)
