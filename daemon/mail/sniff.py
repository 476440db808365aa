"""The Message-ID of raw bytes without parsing them (for logging mail the parser refused)."""

from __future__ import annotations

import re

HEADER_SCAN_BYTES = 65_536
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^<>\s]{1,900}>)", re.IGNORECASE | re.MULTILINE)


def message_id(raw: bytes) -> str:
    """The first Message-ID header of the header section, or "" when there is none."""
    head = raw[:HEADER_SCAN_BYTES]
    end = re.search(rb"\r?\n\r?\n", head)
    found = _MESSAGE_ID.search(head[: end.start()] if end else head)
    return found.group(1).decode("ascii", "replace") if found else ""
