"""Separate the new text of a reply from quoted history, reply headers, footers and signature.

The client- and language-specific words are data, in ``reply_rules`` (one row per client and
language); this module holds the rules that use them, applied line by line, linear in the size
of the text:

* lines starting with ``>`` are quoted history and never part of the new text;
* a *strong* marker ends the new text: a ``-----Original Message-----`` style banner, a
  forwarded-message banner, a ``________________`` rule, an Outlook-style header block (two or
  more ``From:`` / ``Sent:`` / ``To:`` / ``Subject:`` lines, one a From line, in any language of
  the table), or a single From line carrying an address (``De: Ana <ana@example.com>``);
* a mobile or web client footer (``Sent from my iPhone``, ``Von meinem iPhone gesendet``, ...)
  ends the new text too: it is dropped, and so is everything below it, which is the original
  (some clients do not quote it);
* a *reply header* (``On ... wrote:``, ``Am ... schrieb ...:``, ``W dniu ... pisze:`` ...) ends
  the new text, unless unquoted text follows the quote below it (an inline or bottom-posted
  answer), in which case only the header and the quoted lines are dropped. Without a date or
  an opening word (``Bob schrieb:``) it counts only when a quoted line follows, as does Gmail's
  numeric form without a colon (``2011/4/7 Nathan <n@example.com>``). Invisible bidirectional
  marks (right-to-left attributions) are ignored, and an attribution that shares its line with
  the new text above a quote (``Works now On Tue, ... wrote:``) is cut off that line;
* where quoted history was dropped between two pieces of new text, one blank line is left;
* a marker before any new text (bottom posting) is skipped;
* a trailing signature after a ``-- `` line is removed.

When nothing is left, the whole text is returned (better too much than an empty ticket).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from postdesk.daemon.mail.reply_rules import (
    ATTRIBUTIONS,
    BANNERS,
    FOOTERS,
    HEADER_BLOCKS,
    LOOSE_FOOTERS,
    SEPARATOR_WORDS,
    SIGNATURE_DELIMITERS,
)

__all__ = ["extract_new_text"]


def _alternatives(rows: tuple[tuple[str, ...], ...], column: int) -> str:
    """One regex alternation of a table column (empty cells skipped)."""
    return "|".join(row[column] for row in rows if row[column])


_VERB = re.compile(_alternatives(ATTRIBUTIONS, 2))  # matched against lower-cased text
_START_WORD = re.compile(rf"^\s*(?:{_alternatives(ATTRIBUTIONS, 1)})\s", re.I)
# "30.09.2017, 18.30, "John Doe" <john@example.com>:" (a date and an address, no verb); the
# address may be wrapped onto the next line ("Postmaster <" / "postmaster@example.org>:").
_ADDRESS_COLON = re.compile(r"<\s?[^<>\s]+@[^<>\s]+>\s*[:\uff1a]$")
# Gmail's numeric form, also without the colon above a quote: "2011/4/7 Nathan <n@example.com>"
_DATE_FIRST = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\b")
_ADDRESS_END = re.compile(r"<\s?[^<>\s]+@[^<>\s]+>$")
# Bidirectional marks and other invisible format characters: Gmail wraps the parts of a Hebrew,
# Arabic or Persian attribution in them ("...<\u202ab@example.com\u202c\u200f>:\u202c").
_FORMAT_CHARACTERS = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
# An opening word inside a line: "reply On Wed, 4 Apr 2012 ..., bob wrote:" (one line).
_INNER_START = re.compile(rf"(?<=[\s-])(?:{_alternatives(ATTRIBUTIONS, 1)})\s", re.I)
_MAX_INNER_STARTS = 4
_MAX_SHARED = 300  # an attribution sharing a line is looked for in its last characters
_MAX_TAIL = 200  # text allowed between the verb and the final colon ("schrieb "Name <a@b>":")
_DIGIT = re.compile(r"\d")
_COLONS = (":", "\uff1a")  # ASCII and full-width colon
_SEPARATOR = re.compile(
    rf"^\s*[-=*_]{{2,}}\s*[^-=*]{{0,80}}?(?:{_alternatives(SEPARATOR_WORDS, 1)})"
    r"[^-=*]{0,80}?\s*[-=*_]{2,}\s*$",
    re.I,
)
_FORWARD = re.compile(rf"^\s*(?:{_alternatives(BANNERS, 1)})\s*$", re.I)
_RULE = re.compile(r"^\s*_{16,}\s*$")
_DECORATION = re.compile(r"^\s*(?:[-=*]{3,}|_{2,})\s*$")
_FROM_KEYS = _alternatives(HEADER_BLOCKS, 1)
_OTHER_KEYS = _alternatives(HEADER_BLOCKS, 2)
_HEADER_KEY = re.compile(
    rf"^\s*\*?(?:(?P<from>{_FROM_KEYS})|{_OTHER_KEYS})\s*\*?\s*[:\uff1a]", re.I
)
_ADDRESS = re.compile(r"[^\s<>()\[\]:;,\"]+@[^\s<>()\[\]:;,\"]+\.\w")
_FOOTER = re.compile(rf"(?:{_alternatives(FOOTERS, 1)})[\s.!]*(?:<[^<>\s]*>)?[\s.!]*")
_LOOSE_FOOTER = re.compile(rf"(?:{_alternatives(LOOSE_FOOTERS, 1)})(?:<[^<>\s]*>)?[\s.!]*")
# A mailing-list footer (Mailman): "riak-users mailing list" below a rule.
_LIST_FOOTER = re.compile(r"^\s*[\w.@-]{1,80} mailing list\s*$", re.I)
_MAX_FOOTER = 100
_MAX_UNDATED = 120  # an attribution without a date: "Bob Smith <bob@example.com> schrieb:"
_SIGNATURE = re.compile(rf"(?:{_alternatives(SIGNATURE_DELIMITERS, 1)})[ \t]*")
_HEADER_WINDOW = 7
_MAX_SIGNATURE_LINES = 60


def extract_new_text(text: str) -> str:
    """Return only the newly written part of a message body (see the module docstring)."""
    if "\r" in text:  # the parser's text has "\n" line ends already
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = _split_shared_attributions(text.split("\n"))
    kept = _drop_signature(_drop_history(lines))
    result = "\n".join(line.rstrip() for line in kept).strip("\n")
    if result.strip():
        return result
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def _split_shared_attributions(lines: list[str]) -> list[str]:
    """``lines`` with an attribution that shares its line with new text above a quote put on a
    line of its own: "Thanks! On Wed, 4 Apr 2012 at 15:59, Bob wrote:" becomes "Thanks!" and
    "On Wed, ...". The text before it carries no digit, address or opening word at its start
    (else the whole line is one localised attribution, its date first: Apple Mail in Russian)."""
    split: list[str] | None = None
    for index, line in enumerate(lines):
        stripped = line.rstrip()
        if (
            index + 1 < len(lines)
            and stripped.endswith(_COLONS)
            and _is_quoted(lines[index + 1])
            and len(stripped) <= 1000
            and not _is_quoted(line)
            and not _START_WORD.match(line)
        ):
            parts = _shared_attribution(stripped)
            if parts is not None:
                split = split if split is not None else lines[:index]
                split.extend(parts)
                continue
        if split is not None:
            split.append(line)
    return lines if split is None else split


def _shared_attribution(line: str) -> tuple[str, str] | None:
    """(new text, attribution) when ``line`` ends with a dated attribution that starts with an
    opening word after some words of new text; the last such opening word wins (of the last
    ``_MAX_INNER_STARTS``: the work per line stays bounded on hostile text)."""
    starts = [match.start() for match in _INNER_START.finditer(line, len(line) - _MAX_SHARED)]
    for start in reversed(starts[-_MAX_INNER_STARTS:]):
        before, attribution = line[:start].rstrip(" \t-"), line[start:]
        if (
            before.strip()
            and not _DIGIT.search(before)
            and not any(mark in before for mark in "<>@")
            and _DIGIT.search(attribution)
            and _is_reply_header(attribution, lambda: True)
        ):
            return before, attribution
    return None


def _is_quoted(line: str) -> bool:
    """True for a quoted line ("> text", also indented)."""
    return line.lstrip(" \t").startswith(">")


def _quoted_flags(lines: list[str]) -> list[bool]:
    """Which lines are quoted; a lone unquoted line between two quoted ones is a broken wrap."""
    quoted = [_is_quoted(line) for line in lines]
    for index in range(1, len(lines) - 1):
        if not quoted[index] and quoted[index - 1] and quoted[index + 1] and lines[index].strip():
            quoted[index] = True
    return quoted


def _drop_history(lines: list[str]) -> list[str]:
    """The lines of new text: before the first marker, plus inline answers between quotes."""
    count = len(lines)
    quoted = _quoted_flags(lines)
    quotes_before = [0] * (count + 1)  # number of quoted lines in lines[:i]
    for index, flag in enumerate(quoted):
        quotes_before[index + 1] = quotes_before[index] + flag
    next_text = [count] * (count + 1)  # first unquoted non-blank line at or after i
    for index in range(count - 1, -1, -1):
        text_here = not quoted[index] and lines[index].strip()
        next_text[index] = index if text_here else next_text[index + 1]
    out: list[str] = []
    has_content = False
    junction = False  # history was dropped since the last line of text kept
    index = 0
    while index < count:
        if quoted[index]:
            junction = has_content
            index += 1
            continue
        kind, span = _marker_at(lines, index, quoted)
        if kind is None:
            blank = not lines[index].strip()
            if not (blank and junction and out and not out[-1].strip()):
                out.append(lines[index])  # one blank line at most where history was dropped
            has_content = has_content or not blank
            junction = junction and blank
            index += 1
            continue
        if not has_content:  # a header above a bottom-posted answer
            index += span
            continue
        after = index + span
        follow = next_text[after]
        inline = (
            kind == "reply"
            and follow < count
            and quotes_before[follow] > quotes_before[after]
            and _marker_at(lines, follow, quoted)[0] is None
        )
        if not inline:
            break
        junction = True
        index = after
    while out and (not out[-1].strip() or _DECORATION.match(out[-1])):
        out.pop()  # blank lines and rules left above the cut
    return out


def _marker_at(lines: list[str], index: int, quoted: list[bool]) -> tuple[str | None, int]:
    """("strong", lines spanned), ("reply", lines spanned) or (None, 0) for ``lines[index]``.

    A client footer counts as strong: it ends the new text.
    """
    line = lines[index]
    stripped = line.strip()
    if not stripped or len(stripped) > 1000:
        return None, 0
    if _RULE.match(line) or _SEPARATOR.match(line) or _FORWARD.match(line):
        return "strong", 1
    if _RULE.match(line) is None and _LIST_FOOTER.match(line):
        return "strong", 1
    if len(stripped) <= _MAX_FOOTER:
        lowered = stripped.lower()
        if _FOOTER.fullmatch(lowered):
            return "strong", 1
        if _LOOSE_FOOTER.fullmatch(lowered) and _marker_follows(lines, index + 1, quoted):
            return "strong", 1
    if _HEADER_KEY.match(line):
        span = _header_block_span(lines, index, quoted)
        if span:
            return "strong", span
    span = _reply_header_span(lines, index, quoted)
    return ("reply", span) if span else (None, 0)


def _marker_follows(lines: list[str], index: int, quoted: list[bool]) -> bool:
    """True when the next non-blank line (within 3) is quoted or starts a strong/reply marker."""
    for offset in range(index, min(index + 3, len(lines))):
        line = lines[offset]
        if not line.strip():
            continue
        if quoted[offset] or _RULE.match(line) or _SEPARATOR.match(line) or _FORWARD.match(line):
            return True
        if _HEADER_KEY.match(line) and _header_block_span(lines, offset, quoted):
            return True
        return _reply_header_span(lines, offset, quoted) > 0
    return False


def _header_block_span(lines: list[str], index: int, quoted: list[bool]) -> int:
    """Lines spanned by a header block starting at ``index``, or 0.

    A block is 2+ header lines, one a From line, or a From line with an address alone; it runs
    to the first blank or quoted line (wrapped values included).
    """
    keys = 0
    has_from = False
    from_address = False
    end = min(index + _HEADER_WINDOW, len(lines))
    for offset in range(index, end):
        if quoted[offset] or not lines[offset].strip():
            end = offset
            break
        match = _HEADER_KEY.match(lines[offset])
        if match:
            keys += 1
            if match.group("from") is not None:
                has_from = True
                from_address = from_address or bool(_ADDRESS.search(lines[offset], match.end()))
    if not has_from or (keys < 2 and not from_address):
        return 0
    return end - index


def _reply_header_span(lines: list[str], index: int, quoted: list[bool]) -> int:
    """How many lines (1-3) an "On ... wrote:" style header starting at ``index`` spans, or 0."""
    first = lines[index]
    stripped = first.strip()
    if not (_START_WORD.match(first) or _DIGIT.search(stripped) or stripped.endswith(_COLONS)):
        return 0
    joined = stripped
    for span in range(1, 4):
        if len(joined) <= 1200 and _is_reply_header(
            joined, functools.partial(_quote_follows, lines, quoted, index + span)
        ):
            return span
        nxt = index + span
        if nxt >= len(lines) or not lines[nxt].strip():
            return 0
        if quoted[nxt] and lines[nxt].strip() not in (">:", ">\uff1a"):  # "<addr\n>:" wraps
            return 0
        joined = f"{joined} {lines[nxt].strip()}"
    return 0


def _quote_follows(lines: list[str], quoted: list[bool], index: int) -> bool:
    """True when the first non-blank line at or after ``index`` (within 3 lines) is quoted."""
    for offset in range(index, min(index + 3, len(lines))):
        if lines[offset].strip():
            return quoted[offset]
    return False


def _is_reply_header(text: str, quote_follows: Callable[[], bool]) -> bool:
    """True when ``text`` reads like a reply attribution line (no nested quantifiers).

    It ends with a verb of the table and a colon, and starts with an opening word of the table
    or carries a date; without either, a quoted line must follow (``Bob schrieb:``).
    """
    text = text.strip().lower()  # lower() may change lengths: use only this string below
    if not text.isascii():
        text = _FORMAT_CHARACTERS.sub("", text).strip()
    colon = text.endswith(_COLONS)
    window = max(0, len(text) - _MAX_TAIL - 40)  # the verb must be near the end
    last = None
    for last in _VERB.finditer(text, window):  # noqa: B007 - only the last match is needed
        pass
    if last is not None:
        tail = text[last.end() :]
        dated = _DIGIT.search(text) is not None  # Hungarian: "X ezt írta (időpont: <date>):"
        starts = _START_WORD.match(text) is not None
        tail_ok = len(tail) <= _MAX_TAIL + 1 and (tail in _COLONS or tail[:1].isspace())
        if colon and tail_ok and (starts or dated):
            return True
        if not tail and starts and dated:
            return True
        if colon and tail.strip() in _COLONS and len(text) <= _MAX_UNDATED and quote_follows():
            return True
    if not colon:  # "2011/4/7 Nathan <n@example.com>" above a quote
        return bool(
            _DATE_FIRST.match(text) and _ADDRESS_END.search(text, window) and quote_follows()
        )
    if not text[:-1].rstrip().endswith(">"):
        return False
    return _DIGIT.search(text) is not None and bool(_ADDRESS_COLON.search(text, window))


def _drop_signature(lines: list[str]) -> list[str]:
    """Remove a trailing signature introduced by a "-- " line (if text remains above it)."""
    for index in range(len(lines) - 1, -1, -1):
        if len(lines) - index > _MAX_SIGNATURE_LINES:
            break
        if _SIGNATURE.fullmatch(lines[index]):
            above = lines[:index]
            return above if any(line.strip() for line in above) else lines
    return lines
