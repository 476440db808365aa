"""Separate the new text of a reply from the quoted history and the signature below it."""

from __future__ import annotations

import re

REPLY_HEADERS = [
    re.compile(r"^\s*On\b.{0,300}\bwrote:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Am\b.{0,300}\bschrieb.{0,80}:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Le\b.{0,300}\ba écrit\s*:\s*$", re.IGNORECASE),
    re.compile(
        r"^\s*-{2,}\s*(Original Message|Ursprüngliche Nachricht|Message d'origine)\s*-{2,}",
        re.IGNORECASE,
    ),
    re.compile(r"^\s*_{10,}\s*$"),
    re.compile(r"^\s*(From|Von|De):\s.+$", re.IGNORECASE),
]
SENT_LINE = re.compile(r"^\s*(Sent|Gesendet|Envoyé|Date|Datum):\s", re.IGNORECASE)
SIGNATURE = re.compile(r"^-- ?$")


def extract_new_text(text: str) -> str:
    """The text above the quoted history, without a trailing ``-- `` signature."""
    lines = text.replace("\r\n", "\n").split("\n")
    cut = len(lines)
    for index, line in enumerate(lines):
        if _starts_history(lines, index, line):
            cut = index
            break
    kept = lines[:cut]
    for index, line in enumerate(kept):
        if SIGNATURE.match(line):
            kept = kept[:index]
            break
    while kept and (not kept[-1].strip() or kept[-1].lstrip().startswith(">")):
        kept.pop()
    return "\n".join(kept).strip("\n")


def _starts_history(lines: list[str], index: int, line: str) -> bool:
    if line.startswith(">") and all(
        not rest.strip() or rest.startswith(">") for rest in lines[index:]
    ):
        return True
    for pattern in REPLY_HEADERS:
        if pattern.match(line):
            if pattern.pattern.startswith(r"^\s*(From"):
                following = lines[index + 1 : index + 5]
                return any(SENT_LINE.match(other) for other in following)
            return True
    joined = " ".join(lines[index : index + 3])
    return bool(
        line.strip().startswith("On ") and re.search(r"\bwrote:\s*$", joined) and len(joined) < 400
    )
