"""End to end: real SMTP into the real daemon, tickets in SQLite and PostgreSQL, real relay sink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support import CUSTOMER, HELPDESK, Daemon, SmtpSink, make_mail, send, wait_until


def _acks(sink: SmtpSink, address: str = CUSTOMER) -> list:  # type: ignore[type-arg]
    return sink.to(address)


def test_new_mail_becomes_ticket_and_is_acknowledged(daemon: Daemon, sink: SmtpSink) -> None:
    raw = make_mail(message_id="<first@example.org>")
    code, reply = send(daemon.port, raw)
    assert code == 250 and reply.startswith(b"2.0.0")

    ticket = wait_until(lambda: daemon.tickets(), what="ticket")[0]
    assert ticket["number"] == 1
    assert ticket["tag"] == "[Example #1]"
    assert ticket["subject"] == "Printer on fire"
    assert ticket["status"] == "new"
    assert ticket["requester"] == CUSTOMER
    assert ticket["participants"] == [CUSTOMER]
    inbound = ticket["messages"][0]
    assert inbound["direction"] == "in" and inbound["message_id"] == "<first@example.org>"
    assert "my printer is on fire" in inbound["text"]

    ack = wait_until(lambda: _acks(sink), what="acknowledgement")[0]
    assert "[Example #1]" in ack["Subject"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<first@example.org>"
    assert HELPDESK in ack["From"]
    assert ack["Message-ID"].endswith("@example.com>")
    sent = daemon.ticket(1)["messages"][1]
    assert sent["direction"] == "out" and sent["auto"] and sent["message_id"] == ack["Message-ID"]


def test_replies_thread_by_header_and_by_tag(daemon: Daemon, sink: SmtpSink) -> None:
    send(daemon.port, make_mail(message_id="<start@example.org>"))
    ack = wait_until(lambda: _acks(sink), what="acknowledgement")[0]

    by_header = make_mail(subject="Re: no tag here", headers={"In-Reply-To": ack["Message-ID"]})
    by_tag = make_mail(subject="AW: RE:  [ example   #1 ] still burning")
    send(daemon.port, by_header)
    send(daemon.port, by_tag)

    wait_until(lambda: len(daemon.ticket(1)["messages"]) == 4, what="two replies in ticket 1")
    assert len(daemon.tickets()) == 1
    assert daemon.ticket(1)["status"] == "new", "no agent has touched it yet"
    assert len(_acks(sink)) == 1, "replies are not acknowledged again"


def _set_solved(daemon: Daemon, number: int, days_ago: float) -> None:
    moment = datetime.now(UTC) - timedelta(days=days_ago)
    daemon.update_ticket(number, status="solved", solved_at=moment)


def test_reply_to_solved_ticket_reopens_within_window_else_new_linked_ticket(
    daemon: Daemon, sink: SmtpSink
) -> None:
    send(daemon.port, make_mail(subject="first problem"))
    wait_until(lambda: daemon.tickets(), what="ticket 1")
    _set_solved(daemon, 1, days_ago=1)
    send(daemon.port, make_mail(subject="Re: [Example #1] first problem"))
    wait_until(lambda: daemon.ticket(1)["status"] == "open", what="ticket 1 reopened")

    _set_solved(daemon, 1, days_ago=30)
    send(daemon.port, make_mail(subject="Re: [Example #1] it is back"))
    second = wait_until(lambda: len(daemon.tickets()) == 2 and daemon.ticket(2), what="ticket 2")
    assert second["follows"] == 1
    assert daemon.ticket(1)["status"] == "solved"
