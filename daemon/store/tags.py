"""The subject tag, ``[Example #42]``: making it and finding it in subjects."""

from __future__ import annotations

import re
from functools import lru_cache


def format_tag(tag: str, number: int) -> str:
    """The tag of ticket ``number``, e.g. ``[Example #42]``."""
    return f"[{tag} #{number}]"


def find_ticket_numbers(tag: str, subject: str) -> list[int]:
    """Ticket numbers named by tags in ``subject``: any case, any spacing, anywhere, also
    with full-width brackets, number sign and digits (as CJK input methods type them)."""
    return [int(number) for number in _pattern(tag).findall(subject)]


# "Re:", "RE[2]:", "Fwd:", "AW:", "SV:", "Antw:", "Odp:", "回复:" ... (ASCII or full-width colon):
# the reply and forward prefixes of mail clients in their languages (Outlook's "I:" and "R:" in
# Italian, "RV:" in Spanish, "PD:" in Polish, "FS:" in Danish, "VL:" in Finnish, "YNT:" in
# Turkish, "Отв:" in Russian, "ΣΧΕΤ:" in Greek ...).
_PREFIX = re.compile(
    r"^\s*(?:re|fwd?|aw|wg|sv|vs|vl|fs|antw|doorst|odp|pd|tr|ref|réf|rif|r|i|rv|enc|res|vb|atb|"
    r"ynt|ilt|отв|ответ|пересл|σχετ|πρθ|回复|回覆|答复|转发|転送|返信)"
    r"\s*(?:\[\d+\]|\(\d+\))?\s*[:\uff1a]\s*",
    re.IGNORECASE,
)


def bare_subject(tag: str, subject: str) -> str:
    """``subject`` without our ticket tags and without stacked reply/forward prefixes."""
    text = _pattern(tag).sub(" ", subject)
    while True:
        stripped = _PREFIX.sub("", text, count=1).strip()
        if stripped == text.strip():
            return " ".join(stripped.split())
        text = stripped


@lru_cache(maxsize=16)
def _pattern(tag: str) -> re.Pattern[str]:
    words = r"\s+".join(re.escape(word) for word in tag.split())
    # full-width brackets and number sign too: typed with a Chinese or Japanese input method
    return re.compile(rf"[\[\uff3b]\s*{words}\s*[#\uff03]\s*(\d{{1,9}})\s*[\]\uff3d]", re.I)
