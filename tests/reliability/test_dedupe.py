"""Idempotency and duplicate delivery (RELIABILITY §B): the same bytes twice (R-13), one
Message-ID with other content (R-14), no Message-ID at all (R-15). Crash points (R-17) are in
test_crash_points.py; SMTP and IMAP together (R-16) in test_imap_cases.py."""

from __future__ import annotations

from tests.reliability.properties import SendLog, assert_p1_to_p4
from tests.support import Daemon, SmtpSink, make_mail, send, wait_until


def test_r13_same_message_twice_is_stored_and_answered_once(daemon: Daemon, sink: SmtpSink) -> None:
    raw, log = make_mail(message_id="<twice@example.org>"), SendLog()
    assert log.send(daemon.port, raw, "<twice@example.org>", "carol@example.org") == 250
    assert log.send(daemon.port, raw, "<twice@example.org>", "carol@example.org") == 250
    wait_until(lambda: "duplicate" in daemon.log(), what="duplicate suppressed log line")
    assert_p1_to_p4(daemon, log)  # P2: stored once
    assert daemon.inbound_message_ids() == ["<twice@example.org>"]
    wait_until(lambda: sink.to("carol@example.org"), what="acknowledgement")
    assert len(daemon.outbox()) == 1


def test_r14_reused_message_id_with_new_content_is_kept_and_flagged(daemon: Daemon) -> None:
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


def test_r15_missing_message_id_is_generated_and_still_deduplicated(daemon: Daemon) -> None:
    raw = b"From: carol@example.org\r\nTo: support@example.com\r\nSubject: no id\r\n\r\nhello\r\n"
    assert send(daemon.port, raw)[0] == 250
    assert send(daemon.port, raw)[0] == 250
    wait_until(lambda: "duplicate" in daemon.log(), what="second delivery recognised")
    (message_id,) = daemon.inbound_message_ids()
    assert message_id.endswith("@generated.postdesk>")
