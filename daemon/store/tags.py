"""The subject tag, ``[Example #42]``: making it and finding it in subjects."""

from __future__ import annotations

import re
from functools import lru_cache


def format_tag(tag: str, number: int) -> str:
    """The tag of ticket ``number``, e.g. ``[Example #42]``."""
    return f"[{tag} #{number}]"


def find_ticket_numbers(tag: str, subject: str) -> list[int]:
    """Ticket numbers named by tags in ``subject``: any case, any spacing, anywhere."""
    return [int(number) for number in _pattern(tag).findall(subject)]


@lru_cache(maxsize=16)
def _pattern(tag: str) -> re.Pattern[str]:
    words = r"\s+".join(re.escape(word) for word in tag.split())
    return re.compile(rf"\[\s*{words}\s*#\s*(\d{{1,9}})\s*\]", re.IGNORECASE)
