"""A plain top header block is made into the stdlib tree without the feed parser
(``mail.parse._from_head``): the same ParsedMessage, headers and defects as the parser's, for
every mail of the shared corpus and for header blocks that are not plain."""

from __future__ import annotations

import email.policy
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from postdesk.daemon.mail import parse
from postdesk.daemon.mail.parse import MessageRejected, ParsedMessage, parse_file, parse_message

CORPUS = Path(
    os.environ.get(
        "POSTDESK_CORPUS", Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"
    )
)
SUFFIXES = (".eml", ".box", ".msg", ".txt", "")

AWKWARD = [
    b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n",
    b"From: a@example.org\nSubject: hi\n\nbody\n",
    b"From: a@example.org\rSubject: hi\r\rbody\r",
    b"From a@example.org Mon Jan  1 00:00:00 2024\nFrom: a@example.org\nSubject: x\n\nbody\n",
    b"From: a@example.org\nFrom b@example.org\nSubject: x\n\nbody\n",
    b" folded first\nFrom: a@example.org\nSubject: x\n\nbody\n",
    b"From: a@example.org\n: no name\nSubject: x\n\nbody\n",
    b"From: a@example.org\nSubject: x\nnot a header line\nbody\n",
    b"From: a@example.org\nSubject: x",
    b"From: a@example.org\nSubject: x\n",
    b"From: a@example.org\nSubject:\n  folded\n\tagain\nTo: b@example.org,\n c@example.org\n\n",
    b"From: =?utf-8?q?Andr=C3=A9?= <a@example.org>\nSubject: caf\xc3\xa9\n\nbody \xe9\n",
    b"From: a@example.org\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n",
    b"From: a@example.org\nContent-Type: message/rfc822\n\nFrom: c@example.org\n\ninner\n",
    b"From: a@example.org\nContent-Type: text/html; charset=latin-1\n"
    b"Content-Transfer-Encoding: quoted-printable\n\n<p>caf=E9</p>\n",
    b"From: a@example.org\nSubject: " + b"x" * 5000 + b"\n\nbody\n",
    b"From: a@example.org\nContent-Type: text/plain; (((((comment\n\nbody\n",
    b"From: a@example.org\nSubject: big\n\n" + b"line of text\n" * 10000,
]


def _corpus() -> Iterator[Path]:
    if not CORPUS.is_dir():
        return
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file() and path.suffix in SUFFIXES and path.name != "README.md":
            yield path


def _both(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The results of parse_message and parse_file on ``raw`` with the plain-head path, then
    with the feed parser throughout."""
    results: list[object] = []
    for plain in (True, False):
        with monkeypatch.context() as patch:
            if not plain:
                patch.setattr(parse, "_from_head", lambda _raw, _head: None)
            for run in (parse_message, lambda data: parse_file(io.BytesIO(data))):
                try:
                    results.append(run(raw))
                except MessageRejected as rejected:
                    results.append(rejected.reason)
    return results


def _trees(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The stdlib trees' top headers, bytes and defects, with and without the plain path."""
    trees: list[object] = []
    prescan = parse.structure.check(parse._strip_mbox_from(raw), parse.ParseLimits())
    for plain in (True, False):
        message = parse._from_head(prescan.raw, prescan.head) if plain else None
        message = message or parse._feed(prescan.raw)
        defects = [type(defect).__name__ for part in message.walk() for defect in part.defects]
        try:
            generated = message.as_bytes(policy=email.policy.compat32)
        except Exception as error:  # hostile mail the generator refuses: refused alike
            generated = repr(error).encode()
        trees.append((list(message.raw_items()), generated, defects))
    return trees


@pytest.mark.parametrize("raw", AWKWARD)
def test_awkward_header_blocks_give_what_the_parser_gives(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    for data in (raw, raw.replace(b"\n", b"\r\n") if b"\r" not in raw else raw):
        first, first_file, second, second_file = _both(data, monkeypatch)
        assert first == second and first_file == second_file
        plain, fed = _trees(data, monkeypatch)
        assert plain == fed


def test_plain_blocks_are_taken_without_the_parser() -> None:
    prescan = parse.structure.check(AWKWARD[0], parse.ParseLimits())
    assert prescan.head is not None and len(prescan.head.fields) == 2
    for raw in AWKWARD[3:10]:  # envelope line, continuation first, no name, no blank line
        stripped = parse._strip_mbox_from(raw)
        plain = raw.startswith(b"From a@") and not stripped.count(b"\nFrom ")
        assert (parse.structure.check(stripped, parse.ParseLimits()).head is not None) == plain


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"mail corpus not found at {CORPUS}")
@pytest.mark.timeout(300)
def test_every_corpus_mail_gives_what_the_parser_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    files = list(_corpus())
    assert len(files) > 100
    taken = 0
    for path in files:
        raw = path.read_bytes()
        first, first_file, second, second_file = _both(raw, monkeypatch)
        assert first == second, path
        assert first_file == second_file, path
        if isinstance(first, ParsedMessage):
            plain, fed = _trees(raw, monkeypatch)
            assert plain == fed, path
            stripped = parse._strip_mbox_from(raw)
            taken += parse.structure.check(stripped, parse.ParseLimits()).head is not None
    assert taken > len(files) // 4  # the plain path is the common one
