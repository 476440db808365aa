"""Hard limits checked on raw bytes before the stdlib parser ever sees a message."""

from __future__ import annotations

import re
from dataclasses import dataclass

BOUNDARY = re.compile(rb'boundary\s*=\s*"?([^";\r\n]{1,200})', re.IGNORECASE)
HEADER_LINE_START = re.compile(rb"^[^\s:]+:", re.MULTILINE)


@dataclass(frozen=True)
class ParseLimits:
    """Structure limits; mail beyond them is quarantined unparsed (Postfix-like numbers)."""

    max_depth: int = 50
    max_parts: int = 1000
    max_header_bytes: int = 16384
    max_header_section: int = 102400
    max_addresses: int = 1000


def split_head(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """The header section, the blank-line separator, and the body."""
    candidates = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    if not candidates:
        return raw, b"", b""
    end = min(candidates)
    separator = b"\r\n\r\n" if raw.startswith(b"\r\n\r\n", end) else b"\n\n"
    return raw[:end], separator, raw[end + len(separator) :]


def check_limits(raw: bytes, limits: ParseLimits) -> str | None:
    """Why ``raw`` must not be parsed, or None when it is within every limit."""
    head, _separator, _body = split_head(raw)
    if len(head) > limits.max_header_section:
        return f"header section of {len(head)} bytes exceeds {limits.max_header_section}"
    boundaries = set(BOUNDARY.findall(raw))
    if len(boundaries) > limits.max_depth:
        return f"MIME structure deeper than {limits.max_depth} ({len(boundaries)} multipart boundaries)"
    parts = sum(raw.count(b"\n--" + boundary) for boundary in boundaries)
    if parts > limits.max_parts + len(boundaries):
        return f"more than {limits.max_parts} MIME parts"
    return None


def truncate_headers(raw: bytes, limits: ParseLimits, defects: list[str]) -> bytes:
    """``raw`` with every header longer than the limit cut short (a defect is recorded)."""
    head, separator, body = split_head(raw)
    starts = [m.start() for m in HEADER_LINE_START.finditer(head)] + [len(head)]
    if all(b - a <= limits.max_header_bytes for a, b in zip(starts, starts[1:], strict=False)):
        return raw
    pieces = [head[: starts[0]]]
    for a, b in zip(starts, starts[1:], strict=False):
        field = head[a:b]
        if len(field) > limits.max_header_bytes:
            name = field.split(b":", 1)[0].decode("ascii", "replace")
            defects.append(f"header {name} of {len(field)} bytes cut to {limits.max_header_bytes}")
            field = field[: limits.max_header_bytes].rstrip(b"\r\n") + (
                b"\r\n" if b"\r\n" in field else b"\n"
            )
        pieces.append(field)
    return b"".join(pieces) + separator + body
