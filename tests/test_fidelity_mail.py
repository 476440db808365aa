"""Mail that came out wrong on real-world mail (issue 9): charsets, senders, HTML structure."""

from __future__ import annotations

import base64

import pytest

from postdesk.daemon.mail import charset
from postdesk.daemon.mail.charset import decode_bytes, no_surrogates
from postdesk.daemon.mail.headers import decode_words
from postdesk.daemon.mail.parse import parse_message

RUSSIAN = "Здравствуйте! Мой принтер не работает, он не печатает документы уже третий день."


def body_mail(charset: str | None, body: bytes) -> bytes:
    """A single-part text/plain message with raw 8-bit ``body``."""
    ctype = f"text/plain; charset={charset}" if charset else "text/plain"
    return (
        b"From: a@example.com\nSubject: x\nContent-Type: "
        + ctype.encode()
        + b"\nContent-Transfer-Encoding: 8bit\n\n"
        + body
    )


# --- item 3: charsets --------------------------------------------------------------------------


def test_one_bad_byte_in_an_encoded_word_replaces_only_that_byte() -> None:
    data = bytearray("re:我知道你需要更多機會".encode("big5"))
    data[9] = 0xFF  # the lead byte of one character
    word = "=?big5?B?" + base64.b64encode(bytes(data)).decode() + "?="
    defects: list[str] = []
    text = decode_words(word, defects)
    assert text.startswith("re:我知道") and text.endswith("需要更多機會"), text
    assert text.count("\ufffd") == 1
    assert any("invalid 'big5'" in d for d in defects)


def test_one_bad_byte_in_a_body_keeps_the_declared_charset() -> None:
    body = "Grüße aus Köln, schöne Größe. ".encode() * 3 + b"\xff end\n"
    parsed = parse_message(body_mail("utf-8", body))
    assert parsed.text.startswith("Grüße aus Köln") and parsed.text.endswith("\ufffd end\n")


def test_latin1_labelled_utf8_and_utf8_labelled_latin1_are_read_right() -> None:
    as_latin = parse_message(body_mail("iso-8859-1", "Crème brûlée für Sie\n".encode()))
    assert as_latin.text == "Crème brûlée für Sie\n"
    as_utf8 = parse_message(body_mail("utf-8", "Crème brûlée für Sie\n".encode("cp1252")))
    assert as_utf8.text == "Crème brûlée für Sie\n"


@pytest.mark.parametrize("label", ["gb2312", "shift_jis", "big5", "euc-kr"])
def test_utf8_labelled_as_a_multibyte_charset_it_fails_in_is_read_as_utf8(label: str) -> None:
    text = "你好！我公司可代开各类发票，电话：13662615434张经理\n"  # noqa: RUF001
    parsed = parse_message(body_mail(label, text.encode()))
    assert parsed.text == text
    assert f"text part: not '{label}' but UTF-8" in parsed.defects


def test_iso2022jp_as_windows_writes_it_keeps_the_nec_characters() -> None:
    """Outlook writes "①" and "㈱" (NEC row 13 of cp932) into ISO-2022-JP; Python's codec
    refuses them, so the text is read as Windows does (CP50220)."""
    body = b'\x1b$B-!#1ET#38)$N03$H!"-j\x1b(B Co.\n\x1b(I6@6E\x1b(B\n'
    parsed = parse_message(body_mail("iso-2022-jp", body))
    assert parsed.text == "①１都３県の鯵と、㈱ Co.\nｶﾀｶﾅ\n"
    assert not any("invalid" in defect for defect in parsed.defects)


def test_every_jis_x_0208_character_reads_as_pythons_iso2022jp_reads_it() -> None:
    """The Windows reading moves each pair to Shift_JIS: for all 8,836 pairs it gives what
    the stdlib codec gives wherever that codec reads the pair at all."""
    compared = 0
    for first in range(0x21, 0x7F):
        for second in range(0x21, 0x7F):
            data = b"\x1b$B" + bytes((first, second)) + b"\x1b(B"
            try:
                expected = data.decode("iso2022_jp")
            except UnicodeDecodeError:
                continue
            assert charset._iso2022jp_windows(data) == expected, (hex(first), hex(second))
            compared += 1
    assert compared > 6800


def test_undeclared_cyrillic_is_detected_not_read_as_cp1252() -> None:
    parsed = parse_message(body_mail(None, RUSSIAN.encode("cp1251")))
    assert parsed.text == RUSSIAN
    wrong = parse_message(body_mail("us-ascii", RUSSIAN.encode("cp1251")))
    assert wrong.text == RUSSIAN


def test_undeclared_western_text_stays_cp1252() -> None:
    assert decode_bytes("naïve € café\n".encode("cp1252"), None, [], "x") == "naïve € café\n"


@pytest.mark.parametrize("charset", ["big5", "gb2312", "shift_jis", "koi8-r", "windows-1251"])
def test_declared_charsets_that_decode_are_used_as_they_are(charset: str) -> None:
    text = {"koi8-r": RUSSIAN, "windows-1251": RUSSIAN}.get(charset, "我知道你需要更多")
    if charset == "shift_jis":
        text = "お問い合わせありがとうございます"
    defects: list[str] = []
    assert decode_bytes(text.encode(charset), charset, defects, "x") == text
    assert defects == []


# --- item 6: an "@" in an unquoted display name ----------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected", "name"),
    [
        ("Alert@Paxil <mastermind@example.com>", "mastermind@example.com", "Alert@Paxil"),
        ("Mail@Home  Team <team@example.com>  ", "team@example.com", "Mail@Home Team"),
        ('"Alert@Paxil" <mastermind@example.com>', "mastermind@example.com", "Alert@Paxil"),
        ("alice@corp.com@evil.com", None, ""),
        ("alice@corp.com <a@x.com> <b@y.com>", None, ""),
        ("alice@corp.com <a@x.com> b@y.com", None, ""),
        ("alice@corp.com, <a@x.com>", None, ""),
        ("a@b <not-an-address>", None, ""),
        ("a@b <a@example..com>", None, ""),
    ],
)
def test_one_angle_address_after_a_name_with_an_at_sign(
    header: str, expected: str | None, name: str
) -> None:
    parsed = parse_message(f"From: {header}\nSubject: x\n\nbody\n".encode())
    assert (parsed.from_addr, parsed.from_name) == (expected, name)


@pytest.mark.timeout(10)
def test_many_at_signs_in_a_name_parse_quickly() -> None:
    parsed = parse_message(b"From: " + b"@" * 15000 + b" x\nSubject: x\n\nbody\n")
    assert parsed.from_addr is None


def test_outlook_express_big5_label_is_big5() -> None:
    text = "我知道你需要更多機會"
    assert decode_bytes(text.encode("big5"), "chinesebig5", [], "x") == text


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("plain ascii", "plain ascii"),
        ("caf\u00e9 \u20ac \U0001f600", "caf\u00e9 \u20ac \U0001f600"),  # astral: no surrogate
        ("a\ud800b", "a\ufffdb"),
        ("\udc80 tail", "\ufffd tail"),
        (
            "\ud83d\ude00 \u00e9",
            "\ufffd\ufffd \u00e9",
        ),  # a surrogate pair in a str is two lone ones
    ],
)
def test_lone_surrogates_become_replacement_characters(text: str, cleaned: str) -> None:
    assert no_surrogates(text) == cleaned
    assert no_surrogates(text).encode("utf-8").decode("utf-8") == cleaned


def test_utf7_surrogates_from_a_declared_charset_are_replaced() -> None:
    assert decode_bytes(b"x+2D0-y", "utf-7", [], "x") == "x\ufffdy"
