"""Two agent habits: opening a ticket for a customer (#requester) and adding helpers (#assist)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.agentmail import (
    ALICE,
    BOB,
    DAVE,
    MX,
    daemon_with_agents,
    notifications,
    plain_text,
    reply_to,
    send_via,
    wait_mails,
)
from tests.support import CUSTOMER, SmtpSink, make_mail, send, wait_until

PASS = "mx.example.com; dkim=pass header.d=example.com"


def test_agent_opens_a_ticket_on_a_customers_behalf(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        call = make_mail(
            subject="Printer on fire (phone call)",
            sender=ALICE,
            body=f"#requester {CUSTOMER}\n\nCarol called: her printer is on fire.\n",
            headers={"Authentication-Results": PASS},
        )
        assert send_via(daemon.port, call, ALICE, MX) == 250
        ack = wait_mails(sink, CUSTOMER, 1, "the acknowledgement to Carol")[0]
        assert "[Example #1]" in ack["Subject"]
        data = json.loads(daemon.cli("ticket", "1", "--json").stdout)
        assert data["requester"] == CUSTOMER
        assert CUSTOMER in data["participants"]
        first = data["messages"][0]
        assert first["author"] == ALICE and "her printer is on fire" in first["text"]
        assert not [m for m in sink.to(ALICE) if "received your message" in plain_text(m)]

        send(daemon.port, reply_to(ack, "It is smoking now.", CUSTOMER))
        told = wait_until(lambda: notifications(sink, BOB, 1), what="Carol's reply reaches agents")
        assert "It is smoking now." in plain_text(told[-1])
        assert len(daemon.tickets()) == 1


def test_assistants_are_notified_like_the_assignee(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        send(daemon.port, make_mail())
        note = wait_mails(sink, ALICE, 1, "notification")[0]
        body = f"#assign me\n#assist {BOB}\n\nWe are looking into it."
        send(daemon.port, reply_to(note, body, ALICE), sender=ALICE)
        relayed = wait_mails(sink, CUSTOMER, 2, "the relayed reply")[1]
        data = json.loads(daemon.cli("ticket", "1", "--json").stdout)
        assert data["assignee"] == ALICE and data["assistants"] == [BOB]

        counts = {agent: len(sink.to(agent)) for agent in (ALICE, BOB, DAVE)}
        send(daemon.port, reply_to(relayed, "Thanks, any news?", CUSTOMER))
        wait_mails(sink, BOB, counts[BOB] + 1, "the assistant hears of the reply")
        wait_mails(sink, ALICE, counts[ALICE] + 1, "the assignee hears of the reply")
        assert len(sink.to(DAVE)) == counts[DAVE], "other agents are not told"

        send(daemon.port, reply_to(note, f"#unassist {BOB}\n#note", ALICE), sender=ALICE)
        wait_until(
            lambda: daemon.ticket(1)["assistants"] == [], what="#unassist removes the assistant"
        )
