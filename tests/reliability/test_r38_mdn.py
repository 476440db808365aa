"""R-38, read receipts: an MDN (RFC 8098) about mail we sent opens no ticket and gets no answer;
a "displayed" receipt from a recipient of that mail records ``read_at`` on that sent message,
which ``ticket N --json`` shows. Real SMTP to the real daemon, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from email.utils import make_msgid

from tests.reliability.properties import SendLog, assert_p1_to_p4
from tests.support import CUSTOMER, HELPDESK, Daemon, SmtpSink, make_mail, wait_until


def _mdn(
    sender: str,
    subject: str,
    original: str | None,
    in_reply_to: str | None,
    disposition: str = "manual-action/MDN-sent-manually; displayed",
    agent: str = "mail.google.com; Gmail",
) -> tuple[str, bytes]:
    """A read receipt as Gmail and Thunderbird write it: text, the report, the original headers."""
    message_id = make_msgid(domain="example.org")
    threading = (
        f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n" if in_reply_to else ""
    )
    named = f"Original-Message-ID: {original}\r\n" if original else ""
    raw = (
        f"From: {sender}\r\nTo: {HELPDESK}\r\nSubject: Read: {subject}\r\n"
        f"Message-ID: {message_id}\r\n{threading}MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="b1"\r\n'
        "\r\n--b1\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
        f"Your message to {sender} was displayed.\r\n"
        "\r\n--b1\r\nContent-Type: message/disposition-notification\r\n\r\n"
        f"Reporting-UA: {agent}\r\nFinal-Recipient: rfc822; {sender}\r\n{named}"
        f"Disposition: {disposition}\r\n"
        "\r\n--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {original or in_reply_to}\r\nSubject: {subject}\r\n"
        "\r\n--b1--\r\n"
    )
    return message_id, raw.encode()


def test_r38_read_receipt_is_recorded_on_our_mail_without_ticket_or_answer(
    daemon: Daemon, sink: SmtpSink
) -> None:
    log = SendLog()
    assert (
        log.send(
            daemon.port,
            make_mail(message_id="<first@example.org>"),
            "<first@example.org>",
            CUSTOMER,
        )
        == 250
    )
    ack = wait_until(lambda: sink.to(CUSTOMER), what="acknowledgement")[0]
    ours, subject = ack["Message-ID"], ack["Subject"]
    receipts = [
        # a stranger's receipt about our mail is threaded but not believed as a read
        ("dave@example.org", _mdn("dave@example.org", subject, ours, ours)),
        # "deleted" is a disposition, not a read
        (CUSTOMER, _mdn(CUSTOMER, subject, ours, None, "manual-action/MDN-sent-manually; deleted")),
    ]
    for sender, (message_id, raw) in receipts:
        assert log.send(daemon.port, raw, message_id, sender) == 250
    assert_p1_to_p4(daemon, log)
    assert all(m["read_at"] is None for m in daemon.ticket(1)["messages"])
    # Gmail (Original-Message-ID) and Thunderbird (found by In-Reply-To alone), twice over
    gmail = _mdn(CUSTOMER, subject, ours, ours)
    thunderbird = _mdn(CUSTOMER, subject, None, ours, agent="Mozilla Thunderbird; MDN")
    for message_id, raw in (gmail, thunderbird):
        assert log.send(daemon.port, raw, message_id, CUSTOMER) == 250
    figures = assert_p1_to_p4(daemon, log)
    shown = json.loads(daemon.cli("ticket", "1", "--json").stdout)
    read = {m["message_id"]: m["read_at"] for m in shown["messages"] if m["read_at"]}
    assert list(read) == [ours], "only our acknowledgement is read"
    assert read[ours].endswith("+00:00")
    assert [m["message_id"] for m in shown["messages"][:2]] == ["<first@example.org>", ours]
    assert len(daemon.tickets()) == 1, "no receipt opened a ticket"
    receipts = [m for m in shown["messages"] if m["subject"].startswith("Read: ")]
    assert len(receipts) == 4 and all(m["auto"] and m["direction"] == "in" for m in receipts)
    assert shown["status"] == "new", "a receipt neither reopens nor changes the ticket"
    assert [r.kind for r in daemon.outbox()] == ["acknowledgement"], "no receipt was answered"
    assert len(sink.to(CUSTOMER)) == 1 and not sink.to("dave@example.org")
    print(f"R-38 figures: {figures}")
