"""Tests for daemon/mail/reply.py: separating the new text of a reply from quoted history.

The hand-written samples run everywhere; the talon standard replies from the shared corpus run
when the corpus is present (root from POSTDESK_CORPUS, default <repo>/../shared/corpus).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from postdesk.daemon.mail.parse import parse_message
from postdesk.daemon.mail.reply import extract_new_text

CORPUS = Path(
    os.environ.get(
        "POSTDESK_CORPUS", Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"
    )
)
TALON = CORPUS / "replies" / "mailgun-talon" / "standard_replies"
REPLY_DIRS = (
    "github-email_reply_parser",
    "zapier-email-reply-parser",
    "crisp-oss-email-reply-parser",
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thanks!\n\nOn Mon, 3 Mar 2025 at 10:00, Bob <b@example.com> wrote:\n> hi\n", "Thanks!"),
        ("Danke!\n\nAm 03.03.2025 um 10:00 schrieb Bob <b@example.com>:\n> hallo\n", "Danke!"),
        ("Merci\n\nLe 3 mars 2025 à 10:00, Bob <b@example.com> a écrit :\n> salut\n", "Merci"),
        ("Yes.\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\n\nold text\n", "Yes."),
        ("Yes.\n\n----- Original Message -----\nold text\n", "Yes."),
        (
            "Top.\n\nFrom: Bob <b@example.com>\nSent: Monday, March 3, 2025 10:00\n"
            "To: support@example.com\nSubject: Printer\n\nold text\n",
            "Top.",
        ),
        (
            "Oben.\n\nVon: Bob <b@example.com>\nGesendet: Montag, 3. März 2025 10:00\n"
            "An: support@example.com\nBetreff: Drucker\n\nalter Text\n",
            "Oben.",
        ),
        ("Above.\n________________________________\nFrom: Bob\nold\n", "Above."),
        ("Reply\n> quoted\n> more quoted\n", "Reply"),
        ("Fixed, thanks.\n\n-- \nCarla\nACME\n", "Fixed, thanks."),
        ("Fixed.\n\n--\nCarla\n", "Fixed."),
        ("A line with -- in it stays.\nkthx", "A line with -- in it stays.\nkthx"),
        ("On the other hand, this is new text.\n", "On the other hand, this is new text."),
        (
            "Wrapped header\n\nOn Mon, Mar 3, 2025 at 10:00 AM Bob <\nb@example.com> wrote:\n> hi\n",
            "Wrapped header",
        ),
        ("line1\r\nline2\r\n", "line1\nline2"),
        ("", ""),
    ],
)
def test_top_posted_replies(text: str, expected: str) -> None:
    assert extract_new_text(text) == expected


def test_bottom_posted_reply_keeps_the_text_below_the_quote() -> None:
    text = "On 04/02/2012 06:26 PM, Megan wrote:\n> Hi\nHello back\n"
    assert extract_new_text(text) == "Hello back"


def test_inline_answers_are_kept_and_quotes_dropped() -> None:
    text = (
        "Hi,\nOn Tue, 1 Mar 2011 at 18:02 +0530, Abe wrote:\n> question one?\n\n"
        "answer one\n\n> question two?\n\nanswer two\n"
    )
    # Where quoted lines were dropped, one blank line at most is left between the answers.
    assert extract_new_text(text) == "Hi,\n\nanswer one\n\nanswer two"


def test_blank_lines_around_dropped_history_become_one() -> None:
    text = "Fixed it.\n\nOn 3/3/2025 10:00, Bob wrote:\n\n> old\n\n\nRegards, Ann\n"
    assert extract_new_text(text) == "Fixed it.\n\nRegards, Ann"
    kept = "First.\n\n\nSecond, after two blank lines as written."
    assert extract_new_text(kept) == kept


@pytest.mark.parametrize(
    ("line", "new"),
    [
        ("Works now On Tue, Mar 4, 2025 at 9:15 AM, bob@example.com wrote:", "Works now"),
        ("Works now--- On Tue, Mar 4, 2025 at 9:15 AM, Bob wrote:", "Works now"),
        ("Danke und Gruß Am 04.03.2025 um 09:15 schrieb Bob <b@example.com>:", "Danke und Gruß"),
    ],
)
def test_attribution_sharing_a_line_with_new_text_is_cut_off(line: str, new: str) -> None:
    assert extract_new_text(f"Hello,\n{line}\n> old text\n") == f"Hello,\n{new}"


def test_a_line_above_a_quote_is_split_only_at_a_dated_attribution() -> None:
    undated = "Here is what I saw on the screen:\n> error 5"
    assert extract_new_text(undated) == "Here is what I saw on the screen:"
    # Digits before the opening word: the whole line reads as one (localised) attribution.
    numbered = "Hello,\nMy order 7 On Tue, Mar 4, 2025 at 9:15 AM, Bob wrote:\n> old"
    assert extract_new_text(numbered) == "Hello,"


def test_a_localised_attribution_with_an_opening_word_inside_is_not_split() -> None:
    # Apple Mail in Russian: the date first, then "в" (an opening word) inside the line.
    text = "Спасибо!\n\n17 февр. 2025 г., в 13:18, Боб <bob@example.com> написал(а):\n> old\n"  # noqa: RUF001
    assert extract_new_text(text) == "Спасибо!"


def test_only_quoted_text_returns_everything() -> None:
    text = "> nothing new here\n> at all\n"
    assert extract_new_text(text) == "> nothing new here\n> at all"


def test_forward_without_comment_keeps_the_forwarded_body() -> None:
    text = (
        "---------- Forwarded message ---------\nFrom: Bob <b@example.com>\n"
        "Date: Mon, 3 Mar 2025\nSubject: Printer\nTo: a@example.com\n\nThe printer is on fire.\n"
    )
    assert extract_new_text(text) == "The printer is on fire."


@pytest.mark.timeout(10)
def test_large_and_hostile_texts_are_linear() -> None:
    lines = ["On 1 2 3 4 5 6 7 8 9 " + "x " * 500] * 2000 + ["> q"] * 50_000
    assert extract_new_text("\n".join(lines)).startswith("On 1 2 3")
    assert extract_new_text("1" * 2_000_000) == "1" * 2_000_000


# --- corpus: talon standard replies ----------------------------------------------------------


def _expected_reply(eml: Path) -> str:
    """talon's expectation: the *_reply_text file, else "Hello" (talon's own convention).

    Our rules also drop a "-- " signature, which talon keeps: cut it from the expectation.
    """
    expected_file = eml.with_name(eml.stem + "_reply_text")
    expected = expected_file.read_text(encoding="utf-8") if expected_file.exists() else "Hello"
    expected = re.split(r"(?m)^-- ?$", expected)[0]
    return _normalise(expected)


def _normalise(text: str) -> str:
    """Trailing whitespace per line and surrounding blank lines do not count."""
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


@pytest.mark.skipif(not TALON.is_dir(), reason=f"reply corpus not found at {TALON}")
def test_talon_standard_replies() -> None:
    emls = sorted(TALON.glob("*.eml"))
    assert emls, "no .eml files in the talon corpus"
    misses = []
    for eml in emls:
        parsed = parse_message(eml.read_bytes())
        if _normalise(parsed.new_text) != _expected_reply(eml):
            misses.append(eml.name)
    rate = 1 - len(misses) / len(emls)
    print(f"talon standard replies: {len(emls) - len(misses)}/{len(emls)} match ({rate:.0%})")
    assert rate >= 0.9, f"only {rate:.0%} match; misses: {misses}"


@pytest.mark.skipif(not (CORPUS / "replies").is_dir(), reason=f"reply corpus not found at {CORPUS}")
@pytest.mark.timeout(30)
def test_every_reply_sample_gives_text() -> None:
    files = [f for name in REPLY_DIRS for f in sorted((CORPUS / "replies" / name).glob("*.txt"))]
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        new = extract_new_text(text)
        assert new.strip() or not text.strip(), path.name
        assert len(new) <= len(text), path.name
