"""Spoofing and access control (RELIABILITY §H) against the real daemon: Ticket Trick (R-54),
forged internal headers (R-56), tag guessing and thread hijacking (R-57), information in
error replies (R-58). Agent commands with a
forged From (R-55) are in test_r55_agent_auth.py and test_r55_token_binding.py."""

from __future__ import annotations

import smtplib
import socket
from pathlib import Path

from tests.reliability.procs import running_daemon
from tests.reliability.properties import SendLog, assert_p1_to_p4
from tests.support import CUSTOMER, HELPDESK, Daemon, SmtpSink, make_mail, send, wait_until

ATTACKER = "attacker@evil.test"


def test_r54_ticket_trick_mail_from_a_saas_with_the_tag_is_not_added_nor_echoed(
    daemon: Daemon, sink: SmtpSink
) -> None:
    """The attacker opens ticket T and signs up at a SaaS with the helpdesk's address and T's
    tag in the name, so the SaaS's verification mail (from no-reply@) carries T's tag. (A
    reference to a Message-ID we signed is believed from anyone: only our recipients hold it.)"""
    log = SendLog()
    raw = make_mail(subject="hello", sender=ATTACKER, message_id="<trick-1@evil.test>")
    assert log.send(daemon.port, raw, "<trick-1@evil.test>", ATTACKER) == 250
    ack = wait_until(lambda: sink.to(ATTACKER), what="acknowledgement of T")[0]
    verification = make_mail(
        subject=f"Your code is 424242 {ack['Subject']}",
        sender="no-reply@slack.example",
        body="Your verification code: 424242\n",
        message_id="<code@slack.example>",
    )
    assert log.send(daemon.port, verification, "<code@slack.example>", "no-reply@x.example") == 250
    assert_p1_to_p4(daemon, log)
    wait_until(lambda: len(daemon.tickets()) == 2, what="the SaaS mail in a ticket of its own")
    assert len(daemon.ticket(1)["messages"]) == 2, "T holds the attacker's mail and its ack only"
    assert all("424242" not in m.as_string() for m in sink.to(ATTACKER)), "never echoed"
    assert len(sink.received) == 1, "no acknowledgement to no-reply@"


def test_r56_forged_internal_headers_have_no_effect(daemon: Daemon, sink: SmtpSink) -> None:
    """postdesk keeps no state in headers: look-alike control headers are inert text."""
    log = SendLog()
    assert log.send_new(daemon.port, "first", 1) == 250
    wait_until(lambda: daemon.tickets(), what="ticket 1 of another customer")
    forged = {
        "X-HD-Ticket-Id": "1",
        "X-HD-Internal": "1",
        "X-HD-Agent": "admin",
        "X-HD-Spam-Score": "0",
        "X-Postdesk-Ticket": "1",
        "X-Postdesk-Agent": "alice@example.com",
    }
    assert log.send_new(daemon.port, "forged", 2, **forged) == 250
    assert_p1_to_p4(daemon, log)
    tickets = daemon.tickets()
    assert len(tickets) == 2 and len(tickets[0]["messages"]) == 2, "ticket 1 is untouched"
    second = tickets[1]
    assert second["requester"] == "customer2@example.org" and second["assignee"] is None
    assert not second["messages"][0]["internal"], "no header makes a message internal"
    wait_until(lambda: sink.to("customer2@example.org"), what="an ordinary acknowledgement")


def test_r57_tag_from_a_non_participant_opens_a_new_ticket(daemon: Daemon, sink: SmtpSink) -> None:
    send(daemon.port, make_mail())
    wait_until(lambda: daemon.tickets(), what="first ticket")
    intruder = make_mail(subject="Re: [Example #1] give me the data", sender="mallory@evil.test")
    send(daemon.port, intruder, sender="mallory@evil.test")

    tickets = wait_until(
        lambda: len(daemon.tickets()) == 2 and daemon.tickets(), what="second ticket"
    )
    assert len(tickets[0]["messages"]) == 2  # ticket 1: the mail and its ack only
    assert tickets[1]["requester"] == "mallory@evil.test"
    mallory_mail = wait_until(lambda: sink.to("mallory@evil.test"), what="ack to mallory")[0]
    assert "Printer on fire" not in mallory_mail.as_string(), "nothing of #1 leaks to a stranger"


LEAKS = (b"Traceback", b"RuntimeError", b"sqlalchemy", b"/srv", b"/tmp", b"SECRET", b"postdesk.")


def test_r58_error_paths_answer_in_smtp_with_fixed_texts_and_mail_nobody(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    """Unknown queue, too large, a failing spool and bogus commands: every refusal is an SMTP
    reply with a fixed text; none becomes a mail to the (possibly forged) sender."""
    relay = f"smtp://127.0.0.1:{sink.port}"
    with running_daemon(tmp_path, sqlite_url, relay=relay, faults=True) as daemon:
        replies = []
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
            client.ehlo("client.example.org")
            client.mail(CUSTOMER)
            replies.append(client.rcpt("nobody@example.com"))
            limit = daemon.settings.smtp.max_message_bytes
            client.rset()
            replies.append(client.mail(CUSTOMER, options=[f"SIZE={limit + 1}"]))
            client.rset()
            client.mail(CUSTOMER)
            client.rcpt(HELPDESK)
            replies.append(client.data(make_mail(headers={"X-Test-Fault": "raise-in-data"})))
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as raw:
            reader = raw.makefile("rb")
            reader.readline()
            raw.sendall(b"BOGUS /etc/passwd\r\n")
            replies.append((0, reader.readline()))
        assert [code for code, _text in replies] == [550, 552, 451, 0]
        assert replies[3][1].startswith(b"500") or replies[3][1].startswith(b"502")
        for _code, text in replies:
            assert not any(leak in text for leak in LEAKS), text
        assert daemon.outbox() == [] and sink.received == [], "no mail to the sender"
