"""End to end: each agent command, its event with the agent's name, errors told back, turns."""

from __future__ import annotations

from pathlib import Path

from tests.agentmail import (
    ALICE,
    BOB,
    DAVE,
    daemon_with_agents,
    events,
    notifications,
    plain_text,
    reply_to,
    wait_mails,
)
from tests.support import CUSTOMER, SmtpSink, make_mail, send, wait_until

ERIN = "erin@example.org"


def test_each_command_changes_the_ticket_and_names_the_agent(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        send(daemon.port, make_mail())
        send(daemon.port, make_mail(subject="cheap pills", sender=ERIN), sender=ERIN)
        first = wait_until(lambda: notifications(sink, ALICE, 1), what="notification #1")[0]
        commands = (
            "#status pending\n#priority urgent\n#assign bob\n#category billing\n"
            "#cc frank@example.org\n#reply thanks\n\nThe part is on its way."
        )
        send(daemon.port, reply_to(first, commands, ALICE), sender=ALICE)
        relayed = wait_mails(sink, CUSTOMER, 2, "relayed reply")[1]
        text = plain_text(relayed)
        assert "The part is on its way." in text
        assert "Thank you for your patience. We are glad we could help with [Example #1]." in text
        assert "#" not in text.split("-- ")[0].replace("[Example #1]", "")
        assert relayed["Cc"] == "frank@example.org"
        ticket = daemon.ticket(1)
        assert (ticket["status"], ticket["priority"], ticket["assignee"]) == (
            "pending",
            "urgent",
            BOB,
        )
        assert ticket["category"] == "billing"
        assert ticket["participants"] == [CUSTOMER, "frank@example.org"]
        logged = {kind: (actor, detail) for actor, kind, detail in events(daemon, 1)}
        for kind in ("status", "priority", "assigned", "category", "cc", "canned_reply"):
            assert logged[kind][0] == ALICE, kind
        assert logged["status"][1] == {"from": "new", "to": "pending"}
        assert logged["category"][1] == {"category": "billing", "group": "L1"}

        to_dave = wait_until(lambda: notifications(sink, DAVE, 2), what="Dave's notification")[0]
        send(daemon.port, reply_to(to_dave, "#spam\nGo away.", DAVE), sender=DAVE)
        wait_until(lambda: daemon.ticket(2)["spam"] is True, what="#spam")
        assert daemon.ticket(2)["status"] == "closed"
        send(daemon.port, reply_to(to_dave, "#ham", DAVE), sender=DAVE)
        wait_until(lambda: daemon.ticket(2)["spam"] is False, what="#ham")
        assert daemon.ticket(2)["status"] == "open"
        assert len(sink.to(ERIN)) == 1, "the spammer only ever got the acknowledgement"
        by_dave = [kind for actor, kind, _ in events(daemon, 2) if actor == DAVE]
        assert [kind for kind in by_dave if kind != "received"] == ["spam", "ham"]


def test_wrong_commands_are_told_to_the_agent_and_the_rest_still_runs(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        send(daemon.port, make_mail())
        note = wait_until(lambda: notifications(sink, ALICE, 1), what="notification")[0]
        body = (
            "#status nonsense\n#frobnicate\n#assign nobody-we-know\n#reply nosuch\n"
            "#merge 99\n#priority high\n#category two words\nHello Carol, still here."
        )
        send(daemon.port, reply_to(note, body, ALICE), sender=ALICE)
        error = wait_until(
            lambda: [m for m in sink.to(ALICE) if "were not run" in m["Subject"]], what="error mail"
        )[0]
        text = plain_text(error)
        for expected in (
            "'#status nonsense': unknown status",
            "unknown command #frobnicate",
            "'#assign nobody-we-know': no such agent",
            "no canned reply 'nosuch' (available: more_info, password_reset, thanks)",
            # A reply token alone never merges (issue 13): #merge needs Authentication-Results.
            "'#merge 99': #merge touches another ticket and needs Authentication-Results",
            "'#category two words': unknown category (known: billing, outage)",
            "The rest of your reply was sent to the customer.",
        ):
            assert expected in text, expected
        assert error["Subject"].startswith("[Example #1]")
        assert error["Auto-Submitted"] == "auto-replied"
        relayed = wait_mails(sink, CUSTOMER, 2, "the rest is relayed")[1]
        assert "Hello Carol, still here." in plain_text(relayed)
        assert daemon.ticket(1)["priority"] == "high" and daemon.ticket(1)["status"] == "open"


def test_round_robin_assigns_tickets_entering_a_group_in_turn(
    tmp_path: Path, database_url: str, sink: SmtpSink
) -> None:
    routing = (
        '[routing]\ndefault_group = "L1"\nround_robin = ["L1", "L2"]\n'
        'categories = { outage = "L2" }\n'
    )
    with daemon_with_agents(tmp_path, database_url, sink, routing=routing) as daemon:
        for number in range(3):
            send(daemon.port, make_mail(subject=f"problem {number}"))
        wait_until(lambda: len(daemon.tickets()) == 3, what="three tickets")
        assert [t["assignee"] for t in daemon.tickets()] == [ALICE, BOB, ALICE]
        wait_until(lambda: len(sink.to(ALICE)) == 2 and sink.to(BOB), what="notifications")
        assert [m["Subject"][:13] for m in sink.to(ALICE)] == ["[Example #1] ", "[Example #3] "]
        assert sink.to(DAVE) == []
        actors = [(actor, kind) for actor, kind, _ in events(daemon, 2)]
        assert ("postdesk", "assigned") in actors

        first = sink.to(ALICE)[0]
        send(daemon.port, reply_to(first, "#assign nobody\n#category outage", ALICE), sender=ALICE)
        wait_until(lambda: daemon.ticket(1)["assignee"] == DAVE, what="L2 takes its turn")
        assert daemon.ticket(1)["category"] == "outage"
        assert [kind for actor, kind, _ in events(daemon, 1)][-3:] == [
            "assigned",
            "category",
            "assigned",
        ]
