"""The parser's short cut for simple bodies makes exactly the tree the stdlib feedparser makes,
and a small spooled message is read once, when it is claimed."""

from __future__ import annotations

import io
import time
from email.message import Message
from pathlib import Path

import pytest

from postdesk.daemon.intake.spool import READ_WHOLE, Envelope, Spool
from postdesk.daemon.mail import parse
from postdesk.daemon.mail.parse import parse_file, parse_message

BODY = b"Hello,\r\n\r\nthe printer =E2=80=94 is on fire.\r\n\xe9t\xe9\r\n-- \r\nCarol\r\n"
HEAD = b"From: Carol <carol@example.org>\r\nTo: support@example.com\r\nSubject: Help\r\n"
CASES = {
    "crlf": HEAD + b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + BODY,
    "lf": (HEAD + b"\r\n" + BODY).replace(b"\r\n", b"\n"),
    "mixed separator": HEAD + b"\n" + BODY,
    "crlf blank line, then lf ones": HEAD + b"\r\n" + BODY.replace(b"\r\n", b"\n"),
    "lf blank line, then crlf ones": HEAD.replace(b"\r\n", b"\n") + b"\n" + BODY,
    "bare cr blank line": HEAD + b"\r\r\n" + BODY,
    "no separator": HEAD + b"this line is no header\r\n" + BODY,
    "no body": HEAD + b"\r\n",
    "no blank line": HEAD,
    "empty header block": b"\r\n" + BODY,
    "continuation": HEAD + b"X-Long: a\r\n b\r\n\tc\r\n\r\n" + BODY,
    "8-bit header": HEAD + b"X-Name: Ren\xe9\r\n\r\n" + BODY,
    "multipart named": HEAD + b"X-Note: not multipart/mixed\r\n\r\n" + BODY,
    "message type": HEAD + b"Content-Type: message/rfc822\r\n\r\n" + HEAD + b"\r\n" + BODY,
    "multipart": HEAD
    + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\n'
    + BODY
    + b"--b--\r\n",
    "bad multipart": HEAD + b"Content-Type: multipart/mixed\r\n\r\n" + BODY,
    "html": HEAD + b"Content-Type: text/html; charset=latin-1\r\n\r\n<p>" + BODY,
    "long body": HEAD + b"\r\n" + BODY * 20_000,
}


def _tree(message: Message) -> tuple[object, ...]:
    """Everything a parsed tree holds, recursively."""
    payload = message.get_payload()
    inner = [_tree(part) for part in payload] if isinstance(payload, list) else payload
    defects = [type(defect).__name__ for defect in message.defects]
    return (list(message.raw_items()), inner, defects, message.preamble, message.epilogue)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_short_cut_makes_the_feedparsers_tree(name: str) -> None:
    raw = CASES[name]
    chunks = [raw[start : start + 4096] for start in range(0, len(raw), 4096)]
    assert _tree(parse._parse_chunks(iter(chunks))) == _tree(parse._parse_bytes(chunks))


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_file_and_bytes_parse_alike(name: str) -> None:
    raw = CASES[name]
    assert parse_file(io.BytesIO(raw)) == parse_message(raw)


def test_a_simple_body_is_decoded_whole() -> None:
    parsed = parse_message(CASES["crlf"])
    assert parsed.from_addr == "carol@example.org"
    assert parsed.text.startswith("Hello,\n\nthe printer ") and parsed.text.endswith("Carol\n")


def test_a_small_spooled_message_is_read_when_claimed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    envelope = Envelope("carol@example.org", ("support@example.com",), "smtp", time.time())
    small, large = CASES["crlf"], CASES["long body"]
    assert len(large) > READ_WHOLE
    spool.write(small, envelope)
    spool.write(large, envelope)
    first, second = spool.claim(), spool.claim()
    assert first is not None and second is not None
    assert first.data == small and first.raw == small
    assert second.data is None and second.raw == large
    first.path.write_bytes(b"changed")  # what was read at the claim is what counts
    assert first.raw == small
