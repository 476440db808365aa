"""Safe display names for attachment filenames (RELIABILITY R-51).

The name is only ever *shown*; storage paths are derived from server-generated ids elsewhere.
The result is a basename without path separators, control, format (bidi) or line-separator
characters, without leading dots, at most ``MAX_LEN`` characters long (the extension is kept),
and never a Windows reserved device name.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata

__all__ = ["MAX_LEN", "safe_filename"]

MAX_LEN = 200
_MAX_EXT = 16
# Categories removed outright: controls, format chars (bidi overrides, zero-width), surrogates,
# private use, unassigned, line and paragraph separators.
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_WINDOWS_UNSAFE = str.maketrans({c: "_" for c in '<>:"|?*'})
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", "clock$", "conin$", "conout$"}
    | {f"com{n}" for n in "0123456789¹²³"}
    | {f"lpt{n}" for n in "0123456789¹²³"}
)
_SPACES = re.compile(r"\s+")
_EXT = re.compile(rf"\.[A-Za-z0-9_+-]{{1,{_MAX_EXT - 1}}}$")
# Built-in table only, so the result does not depend on the host's /etc/mime.types.
_MIME = mimetypes.MimeTypes(filenames=())


def safe_filename(name: str | None, content_type: str = "application/octet-stream") -> str:
    """Return a safe display name for an attachment called ``name`` (may be None or empty).

    Falls back to ``attachment`` plus an extension guessed from ``content_type``
    (``attachment.bin`` when nothing better is known).
    """
    cleaned = _clean(name or "")
    if not cleaned:
        return "attachment" + _extension_for(content_type)
    if _is_reserved(cleaned):
        cleaned = "_" + cleaned
    return _cap(cleaned)


def _clean(name: str) -> str:
    """Basename with unsafe characters removed, or "" when nothing usable remains."""
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[/\\]", name.rstrip("/\\ \t"))[-1]
    name = "".join(ch for ch in name if _keep_char(ch))
    name = _SPACES.sub(" ", name.translate(_WINDOWS_UNSAFE))
    # Leading dots (hidden files, "..") and trailing dots/spaces (ignored by Windows).
    name = name.strip(" ").lstrip(".").rstrip(". ").strip()
    return name


def _keep_char(ch: str) -> bool:
    """True unless ``ch`` is a control, format, separator or otherwise invisible character."""
    if ch.isspace():
        return True  # every kind of whitespace collapses to a single space later
    return unicodedata.category(ch) not in _DROP_CATEGORIES


def _is_reserved(name: str) -> bool:
    """True for Windows device names such as CON, NUL or COM1, with or without extension."""
    stem = name.split(".", 1)[0].rstrip(" ").lower()
    return stem in _RESERVED


def _cap(name: str) -> str:
    """Shorten ``name`` to MAX_LEN characters, keeping a short extension when there is one."""
    if len(name) <= MAX_LEN:
        return name
    match = _EXT.search(name)
    ext = match.group(0) if match else ""
    stem = name[: len(name) - len(ext)][: MAX_LEN - len(ext)].rstrip(". ")
    return (stem or "attachment") + ext


def _extension_for(content_type: str) -> str:
    """A conventional extension for ``content_type``; ".bin" when unknown."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype in ("", "application/octet-stream"):
        return ".bin"
    if ctype == "message/rfc822":
        return ".eml"
    if ctype == "text/plain":
        return ".txt"
    guessed = _MIME.guess_extension(ctype, strict=False)
    if guessed:
        return guessed
    return ".txt" if ctype.startswith(("text/", "message/")) else ".bin"
