"""Separate the new text of a reply from quoted history, reply headers and the signature.

Rules (applied line by line, linear in the size of the text):

* lines starting with ``>`` are quoted history and never part of the new text;
* a *strong* marker ends the new text: ``-----Original Message-----`` and its translations,
  forwarded-message banners, a ``________________`` rule, or an Outlook-style header block
  (``From:`` / ``Sent:`` / ``To:`` / ``Subject:`` lines, also in other languages);
* a *reply header* (``On ... wrote:``, ``Am ... schrieb ...:``, ``Le ... a écrit :`` ...) ends
  the new text too, unless unquoted text follows the quote below it (an inline or bottom-posted
  answer), in which case only the header and the quoted lines are dropped;
* a marker before any new text (bottom posting) is skipped;
* a trailing signature after a ``-- `` line is removed.

When nothing is left, the whole text is returned (better too much than an empty ticket).
"""

from __future__ import annotations

import re

__all__ = ["extract_new_text"]

_VERBS = (
    r"wrote|writes|schrieb|schreibt|a\s+écrit|écrit|escribió|escreveu|ha\s+scritto|scrisse|"
    r"schreef|skrev|napisał(?:\(a\))?|napisal|написал|написала|kirjoitti|írta|yazd\u0131|έγραψε|写道|寫道"
)
_STARTS = r"on|am|le|el|il|op|den|dne|dnia|w\s+dniu|em|pada|в|на|在|于|於"
_VERB = re.compile(_VERBS)  # matched against lower-cased text (re.I is 10x slower here)
# "30.09.2017, 18.30, "John Doe" <john@example.com>:" (a date and an address, no verb)
_ADDRESS_COLON = re.compile(r"<[^<>\s]+@[^<>\s]+>\s*[:\uff1a]$")
_MAX_TAIL = 200  # text allowed between the verb and the final colon ("schrieb "Name <a@b>":")
_DIGIT = re.compile(r"\d")
_COLONS = (":", "\uff1a")  # ASCII and full-width colon
_START_WORD = re.compile(rf"^\s*(?:{_STARTS})\s", re.I)
_SEPARATOR = re.compile(
    r"^\s*[-=*]{2,}\s*[^-=*]{0,80}?(?:original|message|nachricht|besked|melding|meddelande|"
    r"mensaje|mensagem|messaggio|bericht|viesti|wiadomość|сообщение|mail|wrote|schrieb)"
    r"[^-=*]{0,80}?"
    r"\s*[-=*]{2,}\s*$",
    re.I,
)
_FORWARD = re.compile(
    r"^\s*(?:begin\s+forwarded\s+message|anfang\s+der\s+weitergeleiteten\s+nachricht|"
    r"début\s+du\s+message\s+réexpédié)\s*:\s*$",
    re.I,
)
_RULE = re.compile(r"^\s*_{16,}\s*$")
_DECORATION = re.compile(r"^\s*[-_=*]{3,}\s*$")
_FROM_KEYS = r"from|von|de|van|fra|från|da|od|от|kimden|lähettäjä|message\s+du"
_OTHER_KEYS = (
    r"sent|date|to|cc|bcc|subject|reply-to|gesendet|datum|an|betreff|kopie|envoyé(?:\s+le)?|"
    r"à|a|objet|sujet|copie\s+à|inviato|oggetto|verzonden|aan|onderwerp|til|emne|dato|sendt|"
    r"skickat|till|ämne|enviado|enviada|para|asunto|assunto|fecha|data|wysłano|do|temat|"
    r"отправлено|кому|тема|дата|lähetetty|vastaanottaja|aihe|gönderildi|konu"
)
_HEADER_KEY = re.compile(
    rf"^\s*\*?(?:(?P<from>{_FROM_KEYS})|{_OTHER_KEYS})\s*\*?\s*[:\uff1a]", re.I
)
_SIGNATURE = re.compile(r"--[ \t]*")
_HEADER_WINDOW = 7
_MAX_SIGNATURE_LINES = 60


def extract_new_text(text: str) -> str:
    """Return only the newly written part of a message body (see the module docstring)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept = _drop_signature(_drop_history(lines))
    result = "\n".join(line.rstrip() for line in kept).strip("\n")
    if result.strip():
        return result
    return "\n".join(line.rstrip() for line in lines).strip("\n")


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
    index = 0
    while index < count:
        if quoted[index]:
            index += 1
            continue
        kind, span = _marker_at(lines, index, quoted)
        if kind is None:
            out.append(lines[index])
            has_content = has_content or bool(lines[index].strip())
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
        index = after
    while out and (not out[-1].strip() or _DECORATION.match(out[-1])):
        out.pop()  # blank lines and rules left above the cut
    return out


def _marker_at(lines: list[str], index: int, quoted: list[bool]) -> tuple[str | None, int]:
    """("strong", 1), ("reply", lines spanned) or (None, 0) for the line at ``index``."""
    line = lines[index]
    stripped = line.strip()
    if not stripped or len(stripped) > 1000:
        return None, 0
    if _RULE.match(line) or _SEPARATOR.match(line) or _FORWARD.match(line):
        return "strong", 1
    if _HEADER_KEY.match(line):
        span = _header_block_span(lines, index, quoted)
        if span:
            return "strong", span
    span = _reply_header_span(lines, index, quoted)
    return ("reply", span) if span else (None, 0)


def _header_block_span(lines: list[str], index: int, quoted: list[bool]) -> int:
    """Lines spanned by a block of 3+ header lines (one a "From:") starting at ``index``, or 0.

    The block runs to the first blank or quoted line (wrapped values included).
    """
    keys = 0
    has_from = False
    end = min(index + _HEADER_WINDOW, len(lines))
    for offset in range(index, end):
        if quoted[offset] or not lines[offset].strip():
            end = offset
            break
        match = _HEADER_KEY.match(lines[offset])
        if match:
            keys += 1
            has_from = has_from or match.group("from") is not None
    return end - index if keys >= 3 and has_from else 0


def _reply_header_span(lines: list[str], index: int, quoted: list[bool]) -> int:
    """How many lines (1-3) an "On ... wrote:" style header starting at ``index`` spans, or 0."""
    first = lines[index]
    stripped = first.strip()
    if not (_START_WORD.match(first) or _DIGIT.search(stripped) or stripped.endswith(_COLONS)):
        return 0
    joined = stripped
    for span in range(1, 4):
        if len(joined) <= 1200 and _is_reply_header(joined):
            return span
        nxt = index + span
        if nxt >= len(lines) or not lines[nxt].strip():
            return 0
        if quoted[nxt] and lines[nxt].strip() not in (">:", ">\uff1a"):  # "<addr\n>:" wraps
            return 0
        joined = f"{joined} {lines[nxt].strip()}"
    return 0


def _is_reply_header(text: str) -> bool:
    """True when ``text`` reads like a reply attribution line (no nested quantifiers)."""
    text = text.strip().lower()  # lower() may change lengths: use only this string below
    colon = text.endswith(_COLONS)
    window = max(0, len(text) - _MAX_TAIL - 40)  # the verb must be near the end
    last = None
    for last in _VERB.finditer(text, window):  # noqa: B007 - only the last match is needed
        pass
    if last is not None:
        tail = text[last.end() :]
        dated = _DIGIT.search(text, 0, last.start()) is not None
        starts = _START_WORD.match(text) is not None
        tail_ok = len(tail) <= _MAX_TAIL + 1 and (tail in _COLONS or tail[:1].isspace())
        if colon and tail_ok and (starts or dated):
            return True
        if not tail and starts and dated:
            return True
    if not (colon and text[:-1].rstrip().endswith(">")):
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
