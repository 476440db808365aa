"""``postdesk forget``: no byte of the person's text or address left in the data dir (with the
SQLite file) or in any row, tickets kept as statistics."""

from __future__ import annotations

import json
import os
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select

from postdesk.models.schema import Attachment, Contact, Event, Message
from tests.support import HELPDESK, Daemon, make_mail, send, wait_until, write_config

ERASED = "erin.erased@example.net"
KEPT = "kim.kept@example.org"
SECRET_BODY = "my tax number is ZQX-493-erasure-canary"
SECRET_SUBJECT = "canary subject about my divorce"
KEPT_BODY = "the coffee machine canary-kept is broken"
BLOB = os.urandom(64) + b"attachment-canary" + os.urandom(64)


def erased_mail(number: int) -> bytes:
    message = EmailMessage()
    message["From"], message["To"] = f"Erin Erased <{ERASED}>", HELPDESK
    message["Subject"], message["Message-ID"] = SECRET_SUBJECT, f"<erin{number}@example.net>"
    message.set_content(f"Hello,\n{SECRET_BODY} ({number})\nErin\n")
    if number == 0:
        message.add_attachment(BLOB, maintype="application", subtype="pdf", filename="tax.pdf")
    return message.as_bytes()


def files_containing(root: Path, needles: list[bytes]) -> list[tuple[Path, bytes]]:
    """Every file under ``root`` holding one of ``needles`` (case-insensitively), like grep -ril."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes().lower()
            found += [(path, needle) for needle in needles if needle.lower() in data]
    return found


def test_forget_leaves_no_byte_of_the_person(tmp_path: Path, database_url: str) -> None:
    daemon = Daemon(write_config(tmp_path, database_url), tmp_path)  # acks go to the Maildir
    daemon.start()
    try:
        for number in range(2):
            assert send(daemon.port, erased_mail(number), sender=ERASED)[0] == 250
        assert send(daemon.port, make_mail(body=KEPT_BODY, sender=KEPT), sender=KEPT)[0] == 250
        wait_until(lambda: len(daemon.inbound_message_ids()) == 3, what="stored")
        wait_until(
            lambda: all(o.status == "sent" for o in daemon.outbox()) and len(daemon.outbox()) >= 2,
            what="acks written",
        )
    finally:
        daemon.stop()
    data_dir = daemon.settings.data_dir
    needles = [
        ERASED.encode(),
        SECRET_BODY.encode(),
        SECRET_SUBJECT.encode(),
        BLOB[:64],
        b"attachment-canary",
    ]
    present = {needle for _path, needle in files_containing(data_dir, needles)}
    # The attachment file and the Maildir acks hold the person (an acknowledgement to an
    # unverified sender no longer repeats the subject: R-43); with SQLite the text too.
    assert {BLOB[:64], ERASED.encode()} <= present
    assert present == set(needles) or not database_url.startswith("sqlite")
    before = {t["number"]: t for t in daemon.tickets()}

    dry = daemon.cli("forget", ERASED, "--dry-run").stdout
    theirs = sorted(n for n, t in before.items() if t["requester"] == ERASED)
    kept = next(n for n, t in before.items() if t["requester"] == KEPT)
    assert len(theirs) == 2, before
    assert "would erase" in dry and f"tickets they opened: #{theirs[0]}, #{theirs[1]} " in dry
    assert "attachments removed: 1" in dry and "contact card: deleted" in dry
    assert {needle for _path, needle in files_containing(data_dir, needles)} == present

    done = daemon.cli("forget", ERASED.upper()).stdout
    assert done.startswith(f"erased {ERASED}:")
    leftovers = files_containing(data_dir, needles)
    assert not leftovers, leftovers
    assert files_containing(data_dir, [KEPT_BODY.encode(), KEPT.encode()]), "others are kept"

    after = {t["number"]: t for t in daemon.tickets()}
    assert sorted(after) == sorted(before)
    erased = after[theirs[0]]
    assert erased["requester"].startswith("erased-") and erased["requester"].endswith(".invalid")
    assert after[theirs[1]]["requester"] == erased["requester"]
    for number in theirs:
        assert after[number]["created_at"] == before[number]["created_at"]
        assert after[number]["status"] == before[number]["status"]
        assert [m["created_at"] for m in after[number]["messages"]] == [
            m["created_at"] for m in before[number]["messages"]
        ]
    assert after[kept]["requester"] == KEPT and KEPT_BODY in after[kept]["messages"][0]["text"]
    with daemon._factory() as session:
        assert session.execute(select(Contact).where(Contact.email == ERASED)).first() is None
        assert session.execute(select(Attachment)).first() is None
        erasures = session.execute(select(Event).where(Event.kind == "erased")).scalars().all()
        assert len(erasures) == 2 and erasures[0].actor == "postdesk forget"
        assert json.loads(erasures[0].detail)["pseudonym"] == erased["requester"]
        for message in session.execute(select(Message)).scalars():
            row = (
                f"{message.subject} {message.text} {message.author}".lower().encode() + message.raw
            )
            assert not [needle for needle in needles if needle.lower() in row.lower()], message.id
    daemon.stop()
