"""Quoted-printable bodies whose long lines have escapes only in part of them (an HTML line
``<div style="...">`` followed by the customer's text) are still the stdlib encoder's text, and
the composer's line split is ``splitlines``."""

from __future__ import annotations

import random
from email import quoprimime

from postdesk.daemon.outbound.compose import LINE, _lines, _quoted_printable, _text_part


def test_long_lines_with_escapes_at_one_end_only() -> None:
    rnd = random.Random(11)
    bodies = []
    for length in range(LINE - 3, 3 * LINE + 4):
        for head in ('<div style="a">', "=", "x=", "é" * 3, ""):
            for tail in ("", " ", "\t", "=", " =", "é"):
                bodies.append(head + "y" * length + tail)
                bodies.append("short\n" + head + "y" * length + tail + "\nshort ")
    for _ in range(2000):
        plain = "".join(rnd.choice("ab ") for _ in range(rnd.randint(60, 400)))
        cut = rnd.randint(0, len(plain))
        escapes = "".join(rnd.choice("=\té\x00") for _ in range(rnd.randint(1, 4)))
        bodies.append(plain[:cut] + escapes + plain[cut:])
    for body in bodies:
        for eol in ("\n", "\r\n"):
            ours = _quoted_printable(body.encode("latin-1"), eol)
            assert ours == quoprimime.body_encode(body, LINE, eol), body


def test_lines_are_split_as_splitlines_splits_them() -> None:
    rnd = random.Random(12)
    for _ in range(3000):
        text = "".join(rnd.choice("ab \r\n") for _ in range(rnd.randint(1, 30)))
        assert _lines(text) == text.splitlines()
        data = "".join(rnd.choice("ab\x0b\x0c\x1c\r\n") for _ in range(rnd.randint(0, 30)))
        assert _lines(data.encode()) == data.encode().splitlines()


def test_text_parts_of_many_lines_carry_the_stdlib_encoders_text() -> None:
    """A text part past the 10-line sniff is encoded from its lines without a new split: its
    payload is still ``body_encode`` of the whole text, escapes and line ends of every kind."""
    rnd = random.Random(13)
    pieces = ["y" * 90, "a b ", "=", "é", "\t", "\x00", "\x0b", "\r\n", "\r", "\n", "\n\n", "x"]
    for _ in range(1500):
        text = "\n".join("".join(rnd.choices(pieces, k=rnd.randint(0, 8))) for _ in range(12))
        text += rnd.choice(["", "\n", " ", "y" * 200])
        part = _text_part("plain", text)
        head, _, payload = part.partition(b"\r\n\r\n")
        if not head.endswith(b"quoted-printable"):
            continue
        data = b"\n".join(_lines(text.replace("\x00", "").encode())) + b"\n"
        expected = quoprimime.body_encode(data.decode("latin-1"), LINE, "\r\n")
        assert payload == expected.encode("ascii"), text
