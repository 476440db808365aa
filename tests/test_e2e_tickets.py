"""End to end: real SMTP into the real daemon, tickets in SQLite and PostgreSQL, real relay sink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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


def test_tag_from_a_non_participant_opens_a_new_ticket(daemon: Daemon, sink: SmtpSink) -> None:
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


def test_same_message_twice_is_stored_and_answered_once(daemon: Daemon, sink: SmtpSink) -> None:
    raw = make_mail(message_id="<twice@example.org>")
    assert send(daemon.port, raw)[0] == 250
    assert send(daemon.port, raw)[0] == 250
    wait_until(lambda: "duplicate" in daemon.log(), what="duplicate suppressed log line")
    assert daemon.inbound_message_ids() == ["<twice@example.org>"]
    wait_until(lambda: _acks(sink), what="acknowledgement")
    assert len(daemon.outbox()) == 1


def test_reused_message_id_with_new_content_is_kept_and_flagged(daemon: Daemon) -> None:
    send(daemon.port, make_mail(message_id="<reuse@example.org>", body="first text\n"))
    send(daemon.port, make_mail(message_id="<reuse@example.org>", body="other text\n"))
    wait_until(lambda: len(daemon.inbound_message_ids()) == 2, what="both messages stored")
    flags = [
        m["possible_duplicate"]
        for t in daemon.tickets()
        for m in t["messages"]
        if m["direction"] == "in"
    ]
    assert sorted(flags) == [False, True]


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto-Submitted": "auto-replied"},
        {"Auto-Submitted": "auto-generated"},
        {"Precedence": "bulk"},
        {"Precedence": "junk"},
        {"List-Id": "<announce.example.org>"},
        {"X-Autoreply": "yes"},
        {"X-Auto-Response-Suppress": "All"},
    ],
)
def test_automatic_mail_is_stored_but_never_answered(
    tmp_path: object, sqlite_url: str, sink: SmtpSink, headers: dict[str, str]
) -> None:
    from tests.support import write_config

    config = write_config(tmp_path, sqlite_url, relay=f"smtp://127.0.0.1:{sink.port}")  # type: ignore[arg-type]
    daemon = Daemon(config, tmp_path)  # type: ignore[arg-type]
    daemon.start()
    try:
        send(daemon.port, make_mail(headers=headers))
        send(
            daemon.port,
            make_mail(subject="a person", sender="dave@example.org"),
            sender="dave@example.org",
        )
        wait_until(lambda: sink.to("dave@example.org"), what="ack to the person")
        tickets = daemon.tickets()
        assert len(tickets) == 2
        auto = next(t for t in tickets if t["requester"] == CUSTOMER)
        assert auto["messages"][0]["auto"] is True
        assert sink.to(CUSTOMER) == []
    finally:
        daemon.stop()


def test_null_return_path_and_system_senders_get_no_answer(daemon: Daemon, sink: SmtpSink) -> None:
    send(daemon.port, make_mail(), sender="")
    send(daemon.port, make_mail(sender="MAILER-DAEMON@example.net"), sender="")
    send(
        daemon.port,
        make_mail(subject="control", sender="dave@example.org"),
        sender="dave@example.org",
    )
    wait_until(lambda: sink.to("dave@example.org"), what="ack to the person")
    wait_until(lambda: len(daemon.tickets()) == 3, what="three tickets")
    assert sink.to(CUSTOMER) == [] and sink.to("mailer-daemon@example.net") == []


def test_our_own_mail_coming_back_is_dropped(daemon: Daemon, sink: SmtpSink) -> None:
    send(daemon.port, make_mail())
    ack = wait_until(lambda: _acks(sink), what="acknowledgement")[0]
    send(daemon.port, ack.as_bytes(), sender=HELPDESK)
    wait_until(lambda: "our own mail came back" in daemon.log(), what="loop drop log line")
    assert len(daemon.tickets()) == 1 and len(daemon.ticket(1)["messages"]) == 2


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
