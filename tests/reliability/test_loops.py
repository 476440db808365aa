"""Mail loops (RELIABILITY §F): automatic mail gets no answer (R-37), our own mail coming back
(R-39), help desk against help desk (R-40), a vacation responder without standard headers
(R-41), too many hops (R-44); with real daemons and a real responder on loopback."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.agentmail import events
from tests.reliability.properties import SendLog, assert_p1_to_p4
from tests.reliability.responder import Responder
from tests.support import HELPDESK, Daemon, SmtpSink, make_mail, send, wait_until, write_config

DESK_B = "help@desk-b.example.net"
AWAY = "away@responder.example.net"
QUIET = 3.0  # seconds without any new mail that show a loop has ended


def _listen_port(config: Path) -> int:
    found = re.search(r'listen = "127\.0\.0\.1:(\d+)"', config.read_text())
    assert found is not None
    return int(found.group(1))


def _relay_to(config: Path, port: int) -> None:
    text = config.read_text().replace('relay = ""', f'relay = "smtp://127.0.0.1:{port}"')
    config.write_text(text)


def _desk(tmp_path: Path, name: str, address: str = HELPDESK) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    config = write_config(folder, f"sqlite:///{folder / 'data' / 'postdesk.db'}")
    text = config.read_text().replace(HELPDESK, address).replace('"Example', f'"{name}')
    text = text.replace('secret = "test-secret', f'secret = "{name}-secret')  # its own tokens
    config.write_text(text)
    return config


@contextmanager
def _running(*daemons: Daemon) -> Iterator[None]:
    try:
        for daemon in daemons:
            daemon.start()
        yield
    finally:
        for daemon in daemons:
            daemon.stop()


def _quiet(count: object, what: str) -> None:
    """Wait until ``count()`` stops changing for ``QUIET`` seconds (the loop has ended)."""

    def settled() -> bool:
        before = count()  # type: ignore[operator]
        time.sleep(QUIET)
        return bool(count() == before)  # type: ignore[operator]

    wait_until(settled, timeout=60, what=what)


def test_r40_two_helpdesks_writing_to_each_other_stop_after_one_acknowledgement_each(
    tmp_path: Path,
) -> None:
    """Each desk's "customer" is the other desk: A's acknowledgement goes to B's intake and
    B's to A's. Both mark theirs ``Auto-Submitted: auto-replied`` and both honour it."""
    config_a, config_b = _desk(tmp_path, "A"), _desk(tmp_path, "B", DESK_B)
    _relay_to(config_a, _listen_port(config_b))
    _relay_to(config_b, _listen_port(config_a))
    desk_a, desk_b = Daemon(config_a, config_a.parent), Daemon(config_b, config_b.parent)
    with _running(desk_a, desk_b):
        log_a, log_b = SendLog(), SendLog()
        raw = make_mail(subject="Order 1", sender=DESK_B, to=HELPDESK, message_id="<to-a@x.org>")
        assert log_a.send(desk_a.port, raw, "<to-a@x.org>", DESK_B) == 250
        raw = make_mail(subject="Order 2", sender=HELPDESK, to=DESK_B, message_id="<to-b@x.org>")
        assert log_b.send(desk_b.port, raw, "<to-b@x.org>", HELPDESK, to=DESK_B) == 250
        wait_until(lambda: len(desk_a.tickets()) == 2 and len(desk_b.tickets()) == 2)
        _quiet(lambda: (len(desk_a.outbox()), len(desk_b.outbox())), "the exchange to end")
        print(f"R-40 figures A: {assert_p1_to_p4(desk_a, log_a)}")
        print(f"R-40 figures B: {assert_p1_to_p4(desk_b, log_b)}")
        for desk, other in ((desk_a, DESK_B), (desk_b, HELPDESK)):
            [ack] = desk.outbox()
            assert (ack.kind, ack.recipient, ack.status) == ("acknowledgement", other, "sent")
            tickets = desk.tickets()
            assert len(tickets) == 2, "the forged mail and the other desk's acknowledgement"
            answered = [t for t in tickets if t["messages"][0]["auto"]]
            assert len(answered) == 1, "the other desk's acknowledgement is stored as automatic"


def test_r40_a_responder_ignoring_standard_headers_is_stopped_by_the_rate_limit(
    tmp_path: Path,
) -> None:
    """Variant 2: B answers everything with a fresh subject, no Auto-Submitted, no threading
    headers. Each answer opens a ticket on A; A stops at ``auto_per_recipient_10min``."""
    cap = 3
    responder = Responder(AWAY, subject=lambda _subject: "Automatic reply")
    config = _desk(tmp_path, "A")
    _relay_to(config, responder.port)
    env = {"POSTDESK_OUTBOUND_AUTO_PER_RECIPIENT_10MIN": str(cap)}
    desk = Daemon(config, config.parent, env)
    responder.reply_port = desk.port
    responder.start()
    try:
        with _running(desk):
            log = SendLog()
            raw = make_mail(subject="Hello", sender=AWAY, message_id="<away-0@x.org>")
            assert log.send(desk.port, raw, "<away-0@x.org>", AWAY) == 250
            wait_until(lambda: responder.answered >= cap, what="the ping-pong")
            _quiet(lambda: (responder.answered, len(desk.tickets())), "the ping-pong to stop")
            print(f"R-40 variant 2 figures: {assert_p1_to_p4(desk, log)}")
            assert len(responder.received) == cap, "A stops answering at the per-recipient cap"
            assert len(desk.tickets()) == cap + 1
            assert "rate limit of 3 automatic mails per 10 minutes reached" in desk.log()
    finally:
        responder.stop()


@pytest.mark.parametrize(
    ("prefix", "reopens"),
    [
        ("Out of office: ", 0),  # an out-of-office subject: automatic, so no reopening
        ("Re: ", 1),  # nothing tells it apart from a person: reopened once, not per answer
    ],
    ids=["out-of-office subject", "plain reply subject"],
)
def test_r41_vacation_responder_joins_its_ticket_unanswered_and_reopens_it_at_most_once(
    tmp_path: Path, prefix: str, reopens: int
) -> None:
    """A vacation responder that keeps the subject (with our tag) but sends no Auto-Submitted:
    its answers join the customer's ticket and get no acknowledgement. Its "Out of office:"
    subject marks them automatic, and a solved ticket stays solved (R-41's first
    expectation); a responder whose answers read like a person's reopens it once, not once
    per answer (the second)."""
    responder = Responder(AWAY, subject=lambda subject: f"{prefix}{subject}")
    config = _desk(tmp_path, "A")
    _relay_to(config, responder.port)
    desk = Daemon(config, config.parent)
    responder.reply_port = desk.port
    responder.start()
    try:
        with _running(desk):
            log = SendLog()
            raw = make_mail(subject="Broken", sender=AWAY, message_id="<away-1@x.org>")
            assert log.send(desk.port, raw, "<away-1@x.org>", AWAY) == 250
            wait_until(lambda: responder.answered == 1, what="the out-of-office answer")
            wait_until(lambda: len(desk.ticket(1)["messages"]) == 3, what="answer on ticket 1")
            desk.update_ticket(1, status="solved", solved_at=datetime.now(UTC))
            for n in (2, 3):  # the responder answers two more mails of ours
                raw = make_mail(
                    subject=f"{prefix}Re: [A #1] Broken",
                    sender=AWAY,
                    message_id=f"<away-{n}@x.org>",
                )
                assert log.send(desk.port, raw, f"<away-{n}@x.org>", AWAY) == 250
            wait_until(lambda: len(desk.ticket(1)["messages"]) == 5, what="both on ticket 1")
            _quiet(lambda: (responder.answered, len(desk.outbox())), "the exchange to end")
            print(f"R-41 figures: {assert_p1_to_p4(desk, log)}")
            assert len(desk.tickets()) == 1, "no ticket storm"
            assert len(responder.received) == 1, "one acknowledgement, none for the answers"
            reopened = [kind for _actor, kind, _detail in events(desk, 1) if kind == "reopened"]
            assert len(reopened) == reopens
            assert desk.ticket(1)["status"] == ("open" if reopens else "solved")
    finally:
        responder.stop()


AUTOMATIC = [  # (header, value) or (None, system sender); each must be stored, never answered
    ("Auto-Submitted", "auto-replied"),
    ("Auto-Submitted", "auto-generated"),
    ("Auto-Submitted", "auto-notified"),
    ("Precedence", "bulk"),
    ("Precedence", "junk"),
    ("Precedence", "list"),
    ("Precedence", "auto_reply"),
    ("List-Id", "<announce.example.org>"),
    ("X-Loop", "support@other-helpdesk.example.net"),  # another system's loop guard
    ("X-Loop", ""),  # present, even empty
    ("X-Autoreply", "yes"),
    ("X-Autorespond", "yes"),
    ("X-Autoresponder", "yes"),
    ("X-Mail-Autoreply", "yes"),
    ("X-Precedence", "auto_reply"),
    ("X-Auto-Response-Suppress", "All"),
    ("X-Auto-Response-Suppress", "OOF"),
    ("Return-Path", "<>"),
    (None, "MAILER-DAEMON@example.net"),
    (None, "postmaster@example.net"),
    (None, "noreply@example.net"),
    (None, "no-reply@example.net"),
    # out-of-office subjects of clients that mark nothing (rules Outlook runs itself)
    ("Subject", "Automatic reply: [Example #7] printer"),
    ("Subject", "Réponse automatique : imprimante"),
    ("Subject", "Abwesenheitsnotiz: Drucker"),
    ("Subject", "Balasan otomatis: printer"),
    ("Subject", "自动回复：打印机"),  # noqa: RUF001
]


def test_r37_automatic_mail_is_stored_but_never_answered(daemon: Daemon, sink: SmtpSink) -> None:
    """Table-driven over the RFC 3834 and vendor markers, the null return path and system
    senders; ``Auto-Submitted: no`` is a person's mail and is answered."""
    log = SendLog()
    senders = []
    for n, (header, value) in enumerate(AUTOMATIC):
        sender = value if header is None else f"auto{n}@example.org"
        headers = {header: value} if header and header != "Subject" else None
        subject = value if header == "Subject" else f"auto {n}"
        message_id = f"<auto-{n}@example.org>"
        raw = make_mail(subject=subject, sender=sender, message_id=message_id, headers=headers)
        assert log.send(daemon.port, raw, message_id, sender) == 250
        senders.append(sender.lower())
    raw = make_mail(subject="null path", sender="bounce@example.org", message_id="<null@x.org>")
    assert log.send(daemon.port, raw, "<null@x.org>", "") == 250  # MAIL FROM:<>
    senders.append("bounce@example.org")
    person = make_mail(
        subject="Auto insurance: a person asking",  # "Auto" alone is no out-of-office prefix
        sender="dave@example.org",
        message_id="<person@x.org>",
        headers={"Auto-Submitted": "no"},
    )
    assert log.send(daemon.port, person, "<person@x.org>", "dave@example.org") == 250
    wait_until(lambda: sink.to("dave@example.org"), what="the acknowledgement to the person")
    assert_p1_to_p4(daemon, log)
    tickets = daemon.tickets()
    assert len(tickets) == len(AUTOMATIC) + 2
    automatic = [t for t in tickets if t["requester"] != "dave@example.org"]
    assert all(t["messages"][0]["auto"] for t in automatic)
    assert [r.recipient for r in daemon.outbox()] == ["dave@example.org"], "only the person"
    assert not any(sink.to(sender) for sender in senders)


def test_r39_our_own_mail_coming_back_is_dropped(daemon: Daemon, sink: SmtpSink) -> None:
    send(daemon.port, make_mail())
    ack = wait_until(lambda: sink.to("carol@example.org"), what="acknowledgement")[0]
    send(daemon.port, ack.as_bytes(), sender=HELPDESK)
    wait_until(lambda: "our own mail came back" in daemon.log(), what="loop drop log line")
    assert len(daemon.tickets()) == 1 and len(daemon.ticket(1)["messages"]) == 2


def test_r44_hop_count_loop_is_held_without_reply(daemon: Daemon, sink: SmtpSink) -> None:
    raw = make_mail(message_id="<loop@example.org>")
    looped = (
        b"".join(
            f"Received: from hop{n}.example.net by hop{n + 1}.example.net; "
            "Mon, 1 Jan 2024 00:00:00 +0000\r\n".encode()
            for n in range(60)
        )
        + raw
    )
    log = SendLog()
    assert log.send(daemon.port, looped, "<loop@example.org>", "carol@example.org") == 250
    figures = assert_p1_to_p4(daemon, log)
    assert figures["quarantined"] == 1
    assert "mail loop: 60 Received headers" in daemon.quarantined()[0].reason
    assert daemon.tickets() == [] and sink.received == []
