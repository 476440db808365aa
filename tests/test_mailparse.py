"""Tests for daemon/mail/parse.py and its helpers (mimelimits, htmltext, filenames).

Hand-written fixtures live in tests/fixtures/mail/; the hostile inputs (RELIABILITY R-45..R-51)
are in tests/reliability/test_hostile_input.py, which shares the helpers below.
"""

from __future__ import annotations

import email.policy
from datetime import UTC, datetime
from email.parser import BytesParser
from pathlib import Path

import pytest

from postdesk.daemon.mail import limits as mimelimits
from postdesk.daemon.mail.htmltext import html_to_text
from postdesk.daemon.mail.parse import (
    Attachment,
    ParsedMessage,
    ParseLimits,
    parse_message,
)

FIXTURES = Path(__file__).parent / "fixtures" / "mail"


def fixture(name: str) -> ParsedMessage:
    """Parse one fixture file."""
    return parse_message((FIXTURES / name).read_bytes())


def mail(headers: str, body: str = "body\n", extra: bytes = b"") -> bytes:
    """A small message from header lines (without the blank line) and a body."""
    return headers.strip("\n").encode() + b"\n\n" + body.encode() + extra


def has_defect(parsed: ParsedMessage, text: str) -> bool:
    """True when some defect mentions ``text`` (case-insensitive)."""
    return any(text.lower() in defect.lower() for defect in parsed.defects)


# --- ordinary mail -------------------------------------------------------------------------


def test_plain_reply_fields() -> None:
    parsed = fixture("plain_reply.eml")
    assert parsed.message_id == "<reply-1@example.org>"
    assert not parsed.message_id_generated
    assert parsed.from_addr == "carla.customer@example.org"
    assert parsed.from_name == "Customer, Carla"
    assert parsed.to == ("support@example.com", "second@example.com")
    assert parsed.cc == ("boss@example.org",)
    assert parsed.reply_to == ("other@example.net",)
    assert parsed.subject == "Re: [#1234] Printer does not print"
    assert parsed.date == datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    assert parsed.in_reply_to == ("<ticket-1234@example.com>",)
    assert parsed.references == ("<start@example.com>", "<ticket-1234@example.com>")
    assert parsed.content_type == "text/plain"
    assert parsed.report_type is None
    assert parsed.html is None
    assert parsed.attachments == ()
    assert "> Please try the update." in parsed.text
    assert parsed.new_text == "Hi,\n\nit still does not work after the update."
    assert parsed.defects == ()


def test_header_lookup_is_case_insensitive() -> None:
    parsed = fixture("plain_reply.eml")
    assert parsed.header("SUBJECT") == parsed.subject
    assert parsed.header("x-missing") is None
    assert len(parsed.header_all("Received")) == 1
    assert parsed.header_all("x-missing") == ()
    assert all(name == name.lower() for name in parsed.headers)


def test_html_body_and_inline_image() -> None:
    parsed = fixture("html_inline_image.eml")
    assert parsed.subject == "Bild für Süd"
    assert parsed.html is not None and "<script>" in parsed.html  # raw, never rendered by us
    assert parsed.text == "Hallo Süd,\n\nsiehe Bild (https://example.org/x):\n\n- eins\n- zwei"
    assert "alert" not in parsed.text and "color" not in parsed.text
    (image,) = parsed.attachments
    assert image == Attachment(
        "logo.png", "image/png", b"\x89PNG\r\n\x1a\n", True, "logo@example.org"
    )


def test_forward_without_own_text_uses_forwarded_text() -> None:
    parsed = fixture("forward_only.eml")
    assert parsed.text == "My order #55 arrived broken."
    (forwarded,) = parsed.attachments
    assert forwarded.content_type == "message/rfc822"
    assert forwarded.filename == "Broken order.eml"
    assert forwarded.data.startswith(b"From: Buyer <buyer@example.net>")
    assert b"My order #55 arrived broken." in forwarded.data


def test_forward_with_own_text_keeps_forwarded_text_out() -> None:
    parsed = fixture("forward_with_text.eml")
    assert parsed.text == "Please handle this one."
    assert [a.content_type for a in parsed.attachments] == ["message/rfc822"]


def test_tnef_is_kept_undecoded() -> None:
    parsed = fixture("tnef.eml")
    (tnef,) = parsed.attachments
    assert tnef.filename == "winmail.dat"
    assert tnef.content_type == "application/ms-tnef"
    assert tnef.data.startswith(b"\x78\x9f\x3e\x22")  # the TNEF signature


def test_delivery_report() -> None:
    parsed = fixture("dsn_report.eml")
    assert parsed.content_type == "multipart/report"
    assert parsed.report_type == "delivery-status"
    assert parsed.text.startswith("This is the mail system.")
    types = [a.content_type for a in parsed.attachments]
    assert types == ["message/delivery-status", "text/rfc822-headers"]
    assert b"Status: 5.1.1" in parsed.attachments[0].data


def test_mbox_from_line_is_skipped() -> None:
    parsed = fixture("mbox_from_line.eml")
    assert parsed.from_addr == "customer@example.org"
    assert parsed.subject == "mbox style"
    assert parsed.text == "Body after an mbox From line.\n"


def test_crlf_and_lone_cr_become_newlines() -> None:
    raw = b"From: a@example.com\r\nSubject: crlf\r\n\r\nline 1\r\nline 2\rline 3\r\n"
    assert parse_message(raw).text == "line 1\nline 2\nline 3\n"


def test_missing_message_id_is_generated_and_stable() -> None:
    raw = mail("From: a@example.com\nSubject: no id")
    first, second = parse_message(raw), parse_message(raw)
    assert first.message_id_generated
    assert first.message_id == second.message_id
    assert first.message_id.endswith("@generated.postdesk>") and len(first.message_id) == 53
    other = parse_message(raw + b"x")
    assert other.message_id != first.message_id


def test_message_id_without_brackets_is_repaired() -> None:
    parsed = parse_message(mail("From: a@example.com\nMessage-ID: abc@example.com"))
    assert parsed.message_id == "<abc@example.com>"
    assert not parsed.message_id_generated
    assert has_defect(parsed, "angle brackets")


def test_references_keep_the_last_100() -> None:
    ids = " ".join(f"<r{n}@example.com>" for n in range(150))
    parsed = parse_message(mail(f"From: a@example.com\nReferences: {ids}"))
    assert len(parsed.references) == 100
    assert parsed.references[0] == "<r50@example.com>"
    assert parsed.references[-1] == "<r149@example.com>"


def test_subject_is_one_clean_line() -> None:
    raw = mail("From: a@example.com\nSubject: =?utf-8?q?a=0D=0Ab=00c=E2=80=A8d?=   \te")
    assert parse_message(raw).subject == "abcd e"
    long = parse_message(mail("From: a@example.com\nSubject: " + "x" * 5000))
    assert len(long.subject) == 998


def test_date_variants() -> None:
    utc = parse_message(mail("From: a@example.com\nDate: Mon, 3 Mar 2025 10:00:00 -0000"))
    assert utc.date == datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
    bad = parse_message(mail("From: a@example.com\nDate: yesterday-ish"))
    assert bad.date is None and has_defect(bad, "Date")
    assert parse_message(mail("From: a@example.com")).date is None


def test_alternative_prefers_plain_text() -> None:
    body = (
        "--a\nContent-Type: text/plain\n\nplain version\n"
        "--a\nContent-Type: text/html\n\n<p>html version</p>\n--a--\n"
    )
    raw = mail('From: a@example.com\nContent-Type: multipart/alternative; boundary="a"', body)
    parsed = parse_message(raw)
    assert parsed.text == "plain version"
    assert parsed.html == "<p>html version</p>"
    assert parsed.attachments == ()


def nested_multipart(depth: int) -> bytes:
    """``depth`` multiparts nested inside each other, a text part at the bottom."""
    head = b"From: a@example.com\n"
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(depth)
    )
    closing = b"".join(b"--b%d--\n" % i for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\n\ndeep text\n" + closing


# --- the pre-scan and the stdlib agree on the structure ----------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        nested_multipart(10),
        b'Content-Type: multipart/mixed; boundary="x"\r\r--x\r\rone\r--x\r\rtwo\r--x--\r',
        b'Content-Type: multipart/mixed; boundary="x"\n\n--x\nContent-Type: multipart/mixed;'
        b' boundary="x"\n\n--x\n\nsame boundary\n--x--\n',
        b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\n1\n--d\n\nSubject: two\n\n2\n--d--\n",
        b"Content-Type: multipart/mixed; boundary=----=_Part_1\n\n------=_Part_1\n\nx\n------=_Part_1--\n",
    ],
)
def test_prescan_counts_what_the_stdlib_builds(raw: bytes) -> None:
    prescan = mimelimits.check(raw, ParseLimits())
    message = BytesParser(policy=email.policy.default).parsebytes(prescan.raw)
    assert prescan.parts == sum(1 for _ in message.walk()) - 1


def test_prescan_leaves_clean_messages_untouched() -> None:
    raw = (FIXTURES / "html_inline_image.eml").read_bytes()
    prescan = mimelimits.check(raw, ParseLimits())
    assert prescan.raw == raw and prescan.defects == ()


# --- htmltext ------------------------------------------------------------------------------


def test_html_to_text_rules() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<h1>Title</h1><p>one<br>two</p><div>three</div>"
        '<a href="https://x.example/a">link</a> <a href="https://x.example">https://x.example</a> '
        '<a href="mailto:a@example.com">a@example.com</a>'
        "<script>evil()</script><table><tr><td>c1</td><td>c2</td></tr></table>"
        "&amp; &lt;b&gt; &nbsp;end</body></html>"
    )
    assert html_to_text(html) == (
        "Title\n\none\ntwo\n\nthree\n"
        "link (https://x.example/a) https://x.example a@example.com\n\n"
        "c1 c2\n\n& <b> end"
    )


def test_html_to_text_keeps_pre_and_survives_broken_markup() -> None:
    assert html_to_text("<pre>a  b\n  c</pre>") == "a  b\n  c"
    # a tag still open at the end of the input is dropped, as HTML5 (and every browser) does
    assert html_to_text("a < b and <b>bold</b> <unclosed") == "a < b and bold"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<html><head><title>x</title><body><p>Hello</p></body></html>", "Hello"),
        ("<html><head><style>p {}</style><p>Hi there</p>", "Hi there"),
        ("<head><meta charset=utf-8>Text right after the head", "Text right after the head"),
        ("<p>one</div></span>two</p></p>three", "onetwo\n\nthree"),
    ],
)
def test_html_with_broken_structure_renders_like_a_browser(html: str, text: str) -> None:
    assert html_to_text(html) == text


GMAIL_REPLY = (  # how Gmail wraps the mail answered: the attribution, then the blockquote
    '<div dir="ltr">{answer}</div><div class="gmail_quote"><div dir="ltr" class="gmail_attr">'
    "Am Mo., 3. März 2025 um 10:00 Uhr schrieb Bob &lt;b@example.com&gt;:<br></div>"
    '<blockquote class="gmail_quote" style="margin:0 0 0 .8ex;border-left:1px #ccc solid">'
    "<div>Is it fixed?</div><div><br></div><div>Bob</div></blockquote></div>{below}"
)


@pytest.mark.parametrize(
    ("html", "text"),
    [
        (  # Apple Mail and Thunderbird mark the quote type="cite"; a nested one is "> >"
            '<div>Yes.</div><blockquote type="cite"><div>Fixed?</div>'
            '<blockquote type="cite">Broken.</blockquote></blockquote>',
            "Yes.\n\n> Fixed?\n>\n> > Broken.",
        ),
        (GMAIL_REPLY.format(answer="Yes.", below=""), None),
        (  # the same blockquote straight in the text is Gmail's "quote" button: the writer's own
            'See the manual:<blockquote class="gmail_quote">Press reset.</blockquote>Thanks',
            "See the manual:\n\nPress reset.\n\nThanks",
        ),
        ("<p>Rule:</p><blockquote>Be kind.</blockquote>", "Rule:\n\nBe kind."),
        ('<blockquote type="cite">a \ue000 b\ue001</blockquote>', "> a b"),
    ],
)
def test_a_blockquote_quoting_the_mail_answered_becomes_quoted_lines(
    html: str, text: str | None
) -> None:
    converted = html_to_text(html)
    if text is None:  # Gmail
        assert converted.endswith(":\n\n> Is it fixed?\n>\n> Bob")
        assert "\nAm Mo., 3. März 2025" in converted
    else:
        assert converted == text


def test_an_html_only_inline_answer_below_the_quote_is_new_text() -> None:
    html = GMAIL_REPLY.format(answer="Hello,", below="<div>Yes, since this morning.</div>")
    raw = (
        "From: ann@example.org\r\nTo: support@example.com\r\nSubject: Re: printer\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + html
    ).encode()
    parsed = parse_message(raw)
    assert parsed.new_text == "Hello,\n\nYes, since this morning."
    assert "> Is it fixed?" in parsed.text


@pytest.mark.parametrize(
    "parts",
    [
        # a blank plain alternative before the HTML one
        '--b\r\nContent-Type: text/plain; charset="UTF-8"\r\n\r\n\r\n\r\n'
        '--b\r\nContent-Type: text/html; charset="UTF-8"\r\n\r\n<p>The printer</p>\r\n--b--\r\n',
        # the last boundary without its closing "--": the stdlib adds an empty text/plain part
        '--b\r\nContent-Type: text/html; charset="UTF-8"\r\n\r\n<p>The printer</p>\r\n'
        "--b\r\nContent-Type: application/zip; name=a.zip\r\nContent-Transfer-Encoding: base64"
        "\r\n\r\nUEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\r\n--b\r\n",
    ],
)
def test_a_blank_plain_part_does_not_hide_the_html_body(parts: str) -> None:
    raw = (
        "From: ann@example.org\r\nTo: support@example.com\r\nSubject: printer\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts
    ).encode()
    parsed = parse_message(raw)
    assert parsed.text == "The printer"
    assert parsed.new_text == "The printer"


def test_text_written_around_an_inline_picture_is_all_in_the_text() -> None:
    """Apple Mail writes text, picture, text as three parts of a multipart/mixed; an HTML
    signature part beside the text is body too. The picture stays an attachment."""
    raw = (
        b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: printer\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe display shows this:\r\n"
        b"--b\r\nContent-Type: image/png; name=screen.png\r\nContent-Disposition: inline;"
        b" filename=screen.png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nand then it stops.\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p><b>Ann</b> | ACME</p>\r\n"
        b"--b--\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.text == "The display shows this:\n\nand then it stops.\n\nAnn | ACME\n"
    assert [attachment.filename for attachment in parsed.attachments] == ["screen.png"]


def test_an_alternative_gives_one_text_beside_the_parts_around_it() -> None:
    raw = (
        b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: printer\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="m"\r\n\r\n'
        b'--m\r\nContent-Type: multipart/alternative; boundary="a"\r\n\r\n'
        b"--a\r\nContent-Type: text/plain\r\n\r\nIt is broken.\r\n"
        b"--a\r\nContent-Type: text/html\r\n\r\n<p>It is <i>broken</i>.</p>\r\n--a--\r\n"
        b"--m\r\nContent-Type: text/plain\r\n\r\n-- \r\nlist footer\r\n--m--\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.text == "It is broken.\n\n-- \nlist footer\n"
    assert parsed.html == "<p>It is <i>broken</i>.</p>"
    assert parsed.new_text == "It is broken."


def test_header_objects_are_shared_only_for_short_values() -> None:
    """Equal short structured headers are parsed once; long distinct ones (hostile mail) are
    parsed each time and never kept, and both still give the right parts."""
    from postdesk.daemon.mail import parse as parse_module

    parse_module._header_object.cache_clear()
    padding = "x=" + "v" * 700  # one long parameter: a Content-Type over 700 bytes
    parts = "".join(
        f'--b\r\nContent-Type: application/octet-stream; name="f{n}.bin"; {padding}{n}\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
        for n in range(30)
    )
    raw = (
        "From: a@example.org\r\nTo: support@example.com\r\nSubject: many\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n{parts}--b--\r\n"
    ).encode()
    parsed = parse_message(raw)
    assert parsed.text.strip() == "hello"
    assert [a.filename for a in parsed.attachments] == [f"f{n}.bin" for n in range(30)]
    assert all(a.data == b"\x00\x01\x02" for a in parsed.attachments)
    kept = parse_module._header_object.cache_info().currsize
    assert 0 < kept <= 5, f"{kept} header objects kept: only the short ones may be"
    parse_message(raw)
    assert parse_module._header_object.cache_info().hits > 0, "short headers are shared"
