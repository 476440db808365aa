"""Bounces without an RFC 3464 report (``daemon/mail/plain_bounce.py``), as MTAs write them.

The samples are written here after the formats of qmail, Exim (its plain bounce and its delay
warning), Lotus Domino and a hosted service's HTML bounce; names, hosts and texts are made up.
"""

from __future__ import annotations

import pytest

from postdesk.daemon.mail.plain_bounce import (
    BOUNCE_SUBJECT,
    PlainBounce,
    read_plain_bounce,
    split_returned,
)

RETURNED_HEADERS = (
    "Return-Path: <support@example.com>\n"
    "Received: from helpdesk.example.com (helpdesk.example.com [192.0.2.10])\n"
    "\tby mx.cust.test with ESMTP id 4B2F1; Mon, 3 Mar 2025 10:00:01 +0100\n"
    "From: Example Support <support@example.com>\n"
    "To: gone@cust.test, here@cust.test\n"
    "Subject: [Example #7] Re: printer jams\n"
    "Message-ID: <ours.7@example.com>\n"
    "\n"
    "Hello, the new driver is attached.\n"
)


def _mail(subject: str, body: str, sender: str = "MAILER-DAEMON@mx.cust.test") -> bytes:
    return (
        f"From: {sender}\nTo: support@example.com\nSubject: {subject}\n"
        f"Message-ID: <b1@mx.cust.test>\n\n{body}"
    ).encode()


QMAIL = _mail(
    "failure notice",
    "Hi. This is the qmail-send program at mx.cust.test.\n"
    "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
    "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
    "<gone@cust.test>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
    "--- Below this line is a copy of the message.\n\n" + RETURNED_HEADERS,
)

EXIM = _mail(
    "Mail delivery failed: returning message to sender",
    "This message was created automatically by mail delivery software.\n\n"
    "A message that you sent could not be delivered to one or more of its\n"
    "recipients. This is a permanent error. The following address(es) failed:\n\n"
    "  gone@cust.test\n    host mx.cust.test [192.0.2.1]\n"
    "    SMTP error from remote mail server after RCPT TO:<gone@cust.test>:\n"
    "    550 5.1.1 <gone@cust.test>: Recipient address rejected: User unknown\n\n"
    "------ This is a copy of the message, including all the headers. ------\n\n"
    + RETURNED_HEADERS,
)

EXIM_DELAY = _mail(
    "Warning: message 1tA2B3-000Xyz-Q4 delayed 24 hours",
    "This message was created automatically by mail delivery software.\n"
    "A message that you sent has not yet been delivered to one or more of its\n"
    "recipients after more than 24 hours on the queue on mx.cust.test.\n\n"
    "The message identifier is:     1tA2B3-000Xyz-Q4\n"
    "The address to which the message has not yet been delivered is:\n\n"
    "  gone@cust.test\n    Connection timed out\n\n"
    "No action is required on your part. Delivery attempts will continue for\n"
    "some time, and this warning may be repeated at intervals if the message\n"
    "remains undelivered.\n\n" + RETURNED_HEADERS,
)

DOMINO = (
    "From: Postmaster@cust.test\nTo: support@example.com\n"
    "Subject: DELIVERY FAILURE: User gone (gone@cust.test) not listed in Domino Directory\n"
    "Message-ID: <b2@cust.test>\nMIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="z"\n\n'
    "--z\nContent-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: 8bit\n\n"
    "Your message\n\n  Subject: [Example #7] Re: printer jams\n\n"
    "was not delivered to:\n\n  gone@cust.test\n\n"
    "because:\n\n  User gone (gone@cust.test) not listed in Domino Directory\n\n"
    "--z\nContent-Type: message/rfc822\n\n" + RETURNED_HEADERS + "--z--\n"
).encode("latin-1")

HOSTED_HTML = (
    "From: Mail Delivery Subsystem <bounces@mailer.cust.test>\nTo: support@example.com\n"
    "Subject: Undeliverable: [Example #7] Re: printer jams\nMessage-ID: <b3@cust.test>\n"
    'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="z"\n\n'
    "--z\nContent-Type: text/html; charset=utf-8\n\n"
    "<html><body><p>Delivery has failed to these recipients or groups:</p>"
    '<p><a href="mailto:gone@cust.test">gone@cust.test</a><br>'
    "The email address you entered couldn't be found.</p></body></html>\n"
    "--z\nContent-Type: text/rfc822-headers\n\n" + RETURNED_HEADERS.split("\n\n")[0] + "\n"
    "--z--\n"
).encode()


@pytest.mark.parametrize(
    ("raw", "subject", "delay_only"),
    [
        pytest.param(QMAIL, "failure notice", False, id="qmail"),
        pytest.param(
            EXIM, "Mail delivery failed: returning message to sender", False, id="exim-folded"
        ),
        pytest.param(
            EXIM_DELAY, "Warning: message 1tA2B3-000Xyz-Q4 delayed 24 hours", True, id="delay"
        ),
        pytest.param(
            DOMINO,
            "DELIVERY FAILURE: User gone (gone@cust.test) not listed in Domino Directory",
            False,
            id="domino-attached",
        ),
        pytest.param(HOSTED_HTML, "Undeliverable: [Example #7] Re: printer jams", False, id="html"),
    ],
)
def test_a_bounce_names_the_failed_address_and_the_mail_it_returns(
    raw: bytes, subject: str, delay_only: bool
) -> None:
    # here@cust.test, in the returned copy's To only, got the mail
    expected = PlainBounce(("<ours.7@example.com>",), ("gone@cust.test",), delay_only)
    assert read_plain_bounce(raw, subject) == expected


def test_an_address_in_quotes_is_named_without_them() -> None:
    raw = _mail(
        "Mail delivery failure",
        "The following message, addressed to 'gone@cust.test',\nfailed because it has not "
        "been collected after 30 days\n\n---- START OF RETURNED MESSAGE ----\n" + RETURNED_HEADERS,
    )
    bounce = read_plain_bounce(raw, "Mail delivery failure")
    assert bounce is not None and bounce.named == ("gone@cust.test",)


def test_a_mail_that_returns_nothing_is_no_bounce() -> None:
    raw = _mail("failure notice", "Your message to gone@cust.test could not be delivered.\n")
    assert read_plain_bounce(raw, "failure notice") is None


def test_a_header_line_or_two_in_the_explanation_is_not_the_returned_copy() -> None:
    text = "Your message\nSubject: hello\nTo: gone@cust.test\n\nwas not delivered.\n"
    assert split_returned(text) == (text, "")
    above, copy = split_returned("Sorry.\n\n" + RETURNED_HEADERS)
    assert above == "Sorry.\n"
    assert copy.startswith("Return-Path:") and "Message-ID: <ours.7@example.com>" in copy


def test_bounce_subjects_of_several_mail_systems_and_languages() -> None:
    for subject in (
        "failure notice",
        "Mail delivery failed: returning message to sender",
        "Returned mail: see transcript for details",
        "Undeliverable: [Example #7] printer",
        "Unzustellbar: [Example #7] Drucker",
        "Non remis : [Example #7] imprimante",
        "Permanent Delivery Failure",
        "Delivery Status Notification (Failure)",
    ):
        assert BOUNCE_SUBJECT.search(subject), subject
    for subject in ("Re: [Example #7] printer jams", "Out of office", "Delivered, thanks!"):
        assert not BOUNCE_SUBJECT.search(subject), subject
