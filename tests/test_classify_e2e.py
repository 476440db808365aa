"""End to end through the real daemon: spam is held quietly, ``#ham`` releases it, agents teach.

The daemon starts without a model (and runs, saying so once), a model trained while it runs is
picked up without a restart, a spam mail then gets no acknowledgement and no notification, a
participant's reply into a live ticket is never judged spam, and an agent's ``#ham`` gets the
held ticket acknowledged and notified; the label feeds ``train spam --with-feedback``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from postdesk.daemon.store.db import make_engine, session_factory
from postdesk.models.classify import ClassifyLabel
from tests.agentmail import ALICE, BOB, DAVE, MX, daemon_with_agents, send_via, wait_mails
from tests.classifymail import ham_mail, spam_mail, write_folder
from tests.support import SmtpSink, make_mail, send, wait_until

PASS_ALL = (
    "dkim=pass header.d=example.com; spf=pass smtp.mailfrom=alice@example.com; "
    "dmarc=pass header.from=example.com"
)


def sender_of(raw: bytes) -> str:
    line = next(x for x in raw.split(b"\n") if x.startswith(b"From: "))
    return line.decode().split("<")[-1].strip(" >\r").removeprefix("From: ")


def labels(url: str) -> list[tuple[str, str, str]]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(ClassifyLabel.kind, ClassifyLabel.label, ClassifyLabel.actor)
            ).all()
    finally:
        engine.dispose()
    return [tuple(row) for row in rows]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_spam_is_held_quietly_and_ham_releases_it(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    ham_dir = write_folder(tmp_path / "ham", [ham_mail(n) for n in range(40)])
    spam_dir = write_folder(tmp_path / "spam", [spam_mail(n) for n in range(30)])
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        first_spam = spam_mail(100)
        send(daemon.port, first_spam, sender=sender_of(first_spam))
        send(daemon.port, make_mail())
        wait_mails(sink, sender_of(first_spam), 1, "acknowledgement without a model")
        assert daemon.ticket(1)["spam_score"] is None and daemon.ticket(1)["spam"] is None
        wait_until(lambda: len(daemon.tickets()) == 2, what="two tickets")
        assert daemon.log().count("no spam model at") == 1

        daemon.cli("train", "spam", "--ham", str(ham_dir), "--spam", str(spam_dir))
        time.sleep(1.5)  # the worker looks for a new model at most once a second

        spam = spam_mail(101)
        spammer = sender_of(spam)
        send(daemon.port, spam, sender=spammer)
        # The first message after a model appears loads scikit-learn and the model: seconds.
        held = wait_until(
            lambda: len(daemon.tickets()) == 3 and daemon.ticket(3), timeout=180, what="#3"
        )
        assert held["spam"] is True and held["status"] == "closed"
        assert held["spam_score"] > 0.5

        listed = json.loads(daemon.cli("tickets", "--status", "spam", "--json").stdout)
        assert [t["number"] for t in listed] == [3]
        shown = json.loads(daemon.cli("ticket", "3", "--json").stdout)
        assert shown["spam"] is True and {"spam_score", "category_score"} <= set(shown)

        customer = ham_mail(101)
        send(daemon.port, customer, sender=sender_of(customer))
        wait_mails(sink, sender_of(customer), 1, "acknowledgement of a real customer")
        ack = sink.to(sender_of(customer))[0]
        assert daemon.ticket(4)["spam"] is None and daemon.ticket(4)["spam_score"] < 0.5

        # The customer answers the acknowledgement with something that reads like spam:
        # a participant's reply into a live ticket is never judged spam.
        reply = spam_mail(102).replace(
            b"Message-ID:", f"In-Reply-To: {ack['Message-ID']}\r\nMessage-ID:".encode(), 1
        )
        reply = reply.replace(
            f"From: {sender_of(spam_mail(102))}".encode(),
            f"From: {sender_of(customer)}".encode(),
            1,
        )
        send(daemon.port, reply, sender=sender_of(customer))
        wait_until(lambda: len(daemon.ticket(4)["messages"]) >= 3, what="reply stored in #4")
        assert daemon.ticket(4)["spam"] is None and len(daemon.tickets()) == 4

        assert sink.to(spammer) == []
        notified = [m["Subject"] for agent in (ALICE, BOB, DAVE) for m in sink.to(agent)]
        assert not any("[Example #3]" in subject for subject in notified)

        release = make_mail(
            subject="Re: [Example #3] not spam",
            sender=ALICE,
            body="#ham\n",
            headers={"Authentication-Results": f"mx.example.com; {PASS_ALL}"},
        )
        assert send_via(daemon.port, release, ALICE, MX) == 250
        wait_mails(sink, spammer, 1, "the acknowledgement after #ham")
        assert "[Example #3]" in sink.to(spammer)[0]["Subject"]
        wait_until(
            lambda: [m for m in sink.to(BOB) if "[Example #3]" in m["Subject"]],
            what="Bob's notification of the released ticket",
        )
        assert not [m for m in sink.to(ALICE) if "[Example #3]" in m["Subject"]]
        released = daemon.ticket(3)
        assert released["spam"] is False and released["status"] == "open"
        assert labels(sqlite_url) == [("spam", "ham", ALICE)]

        retrained = daemon.cli("train", "spam", "--with-feedback")
        assert "41 ham, 30 spam (1 from agents)" in retrained.stdout
