"""End to end: an agent's reply reaches the requester and the Cc collaborators, and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agentmail import (
    ALICE,
    BOB,
    DAVE,
    daemon_with_agents,
    notifications,
    plain_text,
    reply_to,
    tokens,
    wait_mails,
)
from tests.support import CUSTOMER, HELPDESK, Daemon, SmtpSink, make_mail, send, wait_until

DAN = "dan@example.org"


@pytest.fixture
def agents_daemon(tmp_path: Path, database_url: str, sink: SmtpSink) -> Iterator[Daemon]:
    """The daemon with agents, on SQLite and PostgreSQL."""
    with daemon_with_agents(tmp_path, database_url, sink) as daemon:
        yield daemon


def test_agent_reply_is_relayed_with_headers_text_and_files(
    agents_daemon: Daemon, sink: SmtpSink
) -> None:
    daemon = agents_daemon
    send(daemon.port, make_mail(message_id="<fire@example.org>", headers={"Cc": DAN}))
    note = wait_mails(sink, ALICE, 1, "notification")[0]
    body = "#priority high\n\nHello Carol,\nwe are sending a technician.\n\n-- \nAlice"
    reply = reply_to(note, body, ALICE, attachments=[("steps.pdf", "application/pdf", b"%PDF-1")])
    send(daemon.port, reply, sender=ALICE)

    relayed = wait_mails(sink, CUSTOMER, 2, "relayed reply")[1]
    assert relayed["From"] == f"Alice via Example Support <{HELPDESK}>"
    assert relayed["To"] == CUSTOMER and relayed["Cc"] == DAN
    assert relayed["Reply-To"] == HELPDESK
    assert relayed["Subject"] == "Re: [Example #1] Printer on fire"
    assert relayed["In-Reply-To"] == "<fire@example.org>"
    assert "<fire@example.org>" in relayed["References"]
    assert note["Message-ID"] not in relayed["References"], (
        "agent-only mail stays out of the thread"
    )
    assert relayed["Auto-Submitted"] is None, "a person's reply is not automatic"
    token = tokens().verify(relayed["Message-ID"])
    assert token is not None and token.agent_key is None
    text = plain_text(relayed)
    assert "we are sending a technician" in text and "Alice" in text
    assert "#priority" not in text, "command lines are removed"
    assert "my printer is on fire" not in text and "wrote:" not in text, "quoted history removed"
    assert [p.get_filename() for p in relayed.iter_attachments()] == ["steps.pdf"]
    assert (
        wait_mails(sink, DAN, 1, "copy to the collaborator")[0]["Message-ID"]
        == relayed["Message-ID"]
    )
    assert [len(sink.to(a)) for a in (ALICE, BOB, DAVE)] == [1, 1, 1], "agents get no copy"

    ticket = daemon.ticket(1)
    assert ticket["priority"] == "high" and ticket["status"] == "open"
    sent = next(m for m in ticket["messages"] if m["message_id"] == relayed["Message-ID"])
    assert sent["direction"] == "out" and not sent["internal"] and not sent["auto"]
    assert sent["text"] == text, "the stored reply is what the customer sees"

    answer = reply_to(relayed, "Thank you, it works.", CUSTOMER)
    send(daemon.port, answer)
    back = wait_until(lambda: notifications(sink, BOB, 1)[1:], what="notification of the answer")
    assert "Thank you, it works." in plain_text(back[0])
    assert len(daemon.tickets()) == 1


def test_notes_and_agent_auto_replies_never_reach_the_customer(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        send(daemon.port, make_mail(headers={"Cc": DAN}))
        note = wait_mails(sink, ALICE, 1, "notification")[0]
        send(
            daemon.port,
            reply_to(note, "#note\nSECRET: customer owes us money", ALICE),
            sender=ALICE,
        )
        to_bob = wait_mails(sink, BOB, 1, "notification to Bob")[0]
        send(daemon.port, reply_to(to_bob, "#note the VIP\nSECRET two", BOB), sender=BOB)
        away = reply_to(note, "I am out of office.", ALICE, {"Auto-Submitted": "auto-replied"})
        send(daemon.port, away, sender=ALICE)
        send(daemon.port, reply_to(note, "We are on it.", ALICE), sender=ALICE)
        relayed = wait_mails(sink, CUSTOMER, 2, "the public reply")
        wait_mails(sink, DAN, 1, "the public reply to the collaborator")
        assert len(relayed) == 2 and len(sink.to(DAN)) == 1
        assert all("SECRET" not in m.as_string() for m in [*relayed, *sink.to(DAN)])
        assert all("out of office" not in m.as_string() for m in relayed), "auto-replies stay"
        stored = daemon.ticket(1)["messages"]
        notes = [m for m in stored if "SECRET: customer" in m["text"]]
        assert len(notes) == 1 and notes[0]["internal"] is True
        assert sum("SECRET two" in m["text"] for m in stored) == 1


def test_cc_collaborators_new_ticket_only_and_by_command(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        send(daemon.port, make_mail(headers={"Cc": DAN}))
        wait_until(lambda: daemon.tickets(), what="ticket 1")
        dan_reply = make_mail(
            subject="Re: [Example #1] Printer on fire", sender=DAN, body="Me too\n"
        )
        send(daemon.port, dan_reply, sender=DAN)
        wait_until(lambda: len(daemon.ticket(1)["messages"]) >= 6, what="Dan's reply joins #1")

        carol_cc = make_mail(
            subject="Re: [Example #1]", body="adding Eve\n", headers={"Cc": "eve@example.org"}
        )
        send(daemon.port, carol_cc)
        eve = make_mail(
            subject="Re: [Example #1] hello", sender="eve@example.org", body="let me in\n"
        )
        send(daemon.port, eve, sender="eve@example.org")
        wait_until(lambda: len(daemon.tickets()) == 2, what="Eve's tag opens a ticket of her own")
        assert "eve@example.org" not in daemon.ticket(1)["participants"], "R-54: Cc on a reply"

        note = wait_until(lambda: notifications(sink, ALICE, 1), what="notification")[0]
        send(
            daemon.port,
            reply_to(note, "#cc Frank <frank@example.org>\n#cc bob@example.com\nHi all", ALICE),
            sender=ALICE,
        )
        frank = wait_mails(sink, "frank@example.org", 1, "relay to the added collaborator")[0]
        assert "Hi all" in plain_text(frank)
        participants = daemon.ticket(1)["participants"]
        assert participants == [CUSTOMER, DAN, "frank@example.org"]
        error = wait_until(
            lambda: [m for m in sink.to(ALICE) if "not run" in m["Subject"]], what="error"
        )
        assert "agent addresses cannot be collaborators" in plain_text(error[0])
