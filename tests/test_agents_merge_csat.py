"""End to end: #merge and later mail to the old ticket; CSAT request, rating versus a real reply."""

from __future__ import annotations

import json
from pathlib import Path

from tests.agentmail import (
    ALICE,
    BOB,
    MX,
    daemon_with_agents,
    events,
    notifications,
    plain_text,
    reply_to,
    send_via,
    wait_mails,
)
from tests.support import CUSTOMER, SmtpSink, make_mail, send, wait_until

ERIN = "erin@example.org"


def test_merge_moves_everything_and_mail_to_the_old_tag_lands_in_the_target(
    tmp_path: Path, database_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, database_url, sink) as daemon:
        send(daemon.port, make_mail(subject="printer broken", message_id="<old@example.org>"))
        send(daemon.port, make_mail(subject="printer still broken", sender=ERIN), sender=ERIN)
        note = wait_until(lambda: notifications(sink, ALICE, 1), what="notification #1")[0]
        wait_until(lambda: notifications(sink, ALICE, 2), what="notification #2")
        # #merge needs Authentication-Results from our MX, not only the reply token (issue 13).
        dkim = {"Authentication-Results": "mx.example.com; dkim=pass header.d=example.com"}
        merge = reply_to(note, "#merge 2\nMerged into your colleague's ticket.", ALICE, dkim)
        assert send_via(daemon.port, merge, ALICE, MX) == 250

        wait_until(lambda: daemon.ticket(1)["merged_into"] == 2, what="merge")
        old, target = daemon.ticket(1), daemon.ticket(2)
        assert old["status"] == "closed" and old["messages"] == [] and old["participants"] == []
        assert sorted(target["participants"]) == [CUSTOMER, ERIN]
        assert "<old@example.org>" in [m["message_id"] for m in target["messages"]]
        assert ("merged", {"into": 2}) in [(k, d) for _, k, d in events(daemon, 1)]
        assert (ALICE, "merged", {"from": 1}) in events(daemon, 2)
        relayed = wait_mails(sink, CUSTOMER, 2, "reply after the merge")[1]
        assert relayed["Subject"].startswith("Re: [Example #2]") and relayed["To"] == ERIN
        assert relayed["Cc"] == CUSTOMER

        send(daemon.port, make_mail(subject="Re: [Example #1] printer broken", body="by tag\n"))
        ack = sink.to(CUSTOMER)[0]
        send(daemon.port, reply_to(ack, "by header", CUSTOMER))
        wait_until(
            lambda: sum(m["text"].startswith("by ") for m in daemon.ticket(2)["messages"]) == 2,
            what="both later mails in #2",
        )
        assert len(daemon.tickets()) == 2 and daemon.ticket(1)["messages"] == []


def test_csat_rating_is_recorded_and_a_real_reply_reopens(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        send(daemon.port, make_mail())
        note = wait_until(lambda: notifications(sink, ALICE, 1), what="notification")[0]
        send(daemon.port, reply_to(note, "#status solved\nAll fixed.", ALICE), sender=ALICE)
        _ack, relayed, csat = wait_mails(sink, CUSTOMER, 3, "the reply and the CSAT request")
        assert "All fixed." in plain_text(relayed)
        assert csat["Subject"].startswith("[Example #1] How did we do?")
        assert csat["Auto-Submitted"] == "auto-replied"
        assert "1 (poor) to 5 (excellent)" in plain_text(csat)
        assert daemon.ticket(1)["status"] == "solved"
        before = len(sink.received)

        send(daemon.port, reply_to(csat, "Good! Thanks a lot.", CUSTOMER))
        wait_until(lambda: daemon.ticket(1)["rating"] == 5, what="rating recorded")
        assert daemon.ticket(1)["status"] == "solved", "a rating does not reopen"
        shown = json.loads(daemon.cli("ticket", "1", "--json").stdout)
        assert shown["rating"] == 5
        assert (CUSTOMER, "rated", {"rating": 5}) in events(daemon, 1)

        send(daemon.port, reply_to(csat, "It is broken again, the fix did not hold.", CUSTOMER))
        wait_until(lambda: daemon.ticket(1)["status"] == "open", what="reopened")
        assert daemon.ticket(1)["rating"] == 5
        wait_until(lambda: len(sink.received) == before + 3, what="three reopen notifications")
        reopened = notifications(sink, BOB, 1)[1:]
        assert [m["Subject"][:22] for m in reopened] == ["[Example #1] Reopened:"]
