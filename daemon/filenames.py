"""Safe display names for attachment files (never used as storage paths)."""

from __future__ import annotations

import mimetypes
import re
import unicodedata

MAX_LENGTH = 200
WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)


def safe_filename(name: str | None, content_type: str = "application/octet-stream") -> str:
    """Basename only, control and bidi characters removed, length capped, never empty."""
    cleaned = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c for c in cleaned if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp"))
    cleaned = cleaned.strip().lstrip(".").strip()
    if WINDOWS_RESERVED.match(cleaned):
        cleaned = f"_{cleaned}"
    if len(cleaned) > MAX_LENGTH:
        stem, dot, extension = cleaned.rpartition(".")
        extension = extension[:20] if dot and stem else ""
        cleaned = cleaned[: MAX_LENGTH - len(extension) - 1].rstrip(".") + (
            f".{extension}" if extension else ""
        )
    if not cleaned:
        cleaned = "attachment" + (mimetypes.guess_extension(content_type) or ".bin")
    return cleaned
