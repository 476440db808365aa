"""Quoted-printable bodies whose long lines have escapes only in part of them (an HTML line
``<div style="...">`` followed by the customer's text) are still the stdlib encoder's text, and
the composer's line split is ``splitlines``."""

from __future__ import annotations

import random
from email import quoprimime

from postdesk.daemon.outbound.compose import LINE, _lines, _quoted_printable


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
