"""Header-field rewriting for the MIME pre-scan (``mimelimits``), done as edits on the raw bytes.

The stdlib header parser is quadratic on hostile values, so before it runs every header field
longer than ``max_header_bytes`` is cut (a defect is recorded), and ``Content-Type``,
``Content-Disposition`` and ``Content-Transfer-Encoding`` fields that are not in a simple,
well-formed shape are rewritten into a canonical one (comments dropped, at most ``_MAX_PARAMS``
parameters, RFC 2231 values re-encoded). ``FieldEdits`` records these edits and applies them.
"""

from __future__ import annotations

import email.message
import email.utils
import functools
import re
from collections.abc import Sequence

__all__ = ["LINEBREAK", "STRUCTURAL_FIELDS", "FieldEdits", "strip_comments"]

_MAX_PARAMS = 12
_MAX_CLEAN = 1024  # longer structural fields are always rewritten
_MAX_CANONICAL_INPUT = 4096
_MAX_PARAM_VALUE = 1000
_MAX_DEFECTS = 20

LINEBREAK = re.compile(rb"\r\n|\r|\n")  # a line ending as email.feedparser sees one
_TOKEN = rb"[!#$%&'*+\-.0-9A-Z^_`a-z|~]+"
_PNAME = rb"[!#$%&'+\-.0-9A-Z^_`a-z|~]+"  # no "*": RFC 2231 names take the canonical path
_QSTR = rb'"[\x20\x21\x23-\x5b\x5d-\x7e]*"'
_PARAMS = rb"(?:;[ \t]*" + _PNAME + rb"=(?:" + _TOKEN + rb"|" + _QSTR + rb")[ \t]*)*;?[ \t]*"
_CLEAN = {
    b"content-type": re.compile(rb"[ \t]*(" + _TOKEN + rb"/" + _TOKEN + rb")[ \t]*" + _PARAMS),
    b"content-disposition": re.compile(rb"[ \t]*(" + _TOKEN + rb")[ \t]*" + _PARAMS),
    b"content-transfer-encoding": re.compile(rb"[ \t]*([A-Za-z0-9_.\-]{1,40})[ \t]*"),
}
_PARAM = re.compile(rb";[ \t]*(" + _PNAME + rb")=(" + _TOKEN + rb"|" + _QSTR + rb")")
_MIME_TYPE = re.compile(r"[!#$%&'*+\-.0-9a-z^_`|~]+/[!#$%&'*+\-.0-9a-z^_`|~]+")
_DISPOSITION = re.compile(r"[!#$%&'*+\-.0-9a-z^_`|~]+")
_CTE = re.compile(r"[A-Za-z0-9_.\-]{1,40}")
_SEMICOLON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|;|[^";]+')
_PRINTABLE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
STRUCTURAL_FIELDS = frozenset(_CLEAN)  # lower-case names of the fields that may be rewritten


class FieldEdits:
    """The edits made to one message's header fields, and the defects they record."""

    def __init__(self, raw: bytes, max_header_bytes: int) -> None:
        self.raw = raw
        self.max_header_bytes = max_header_bytes
        self.edits: list[tuple[int, int, bytes]] = []
        self._truncated: dict[int, bytes] = {}  # field start -> truncated field
        self.defects: list[str] = []

    def limit_field(self, start: int, end: int) -> int:
        """Truncate one header field over ``max_header_bytes``; return the bytes removed."""
        limit = self.max_header_bytes
        if end - start <= limit:
            return 0
        field = self.raw[start:end]
        linebreak = LINEBREAK.search(field)
        ending = linebreak.group(0) if linebreak else b"\n"
        kept = field[:limit].rstrip(b"\r\n") + ending
        name = field.split(b":", 1)[0][:60].decode("ascii", "replace")
        self._defect(f"header {name} truncated from {end - start} to {limit} bytes")
        self.edits.append((start, end, kept))
        self._truncated[start] = kept
        return (end - start) - len(kept)

    def structural(
        self, name: bytes, start: int, colon: int, end: int
    ) -> tuple[str, bytes | None] | None:
        """Check (and maybe rewrite) a structural field; for Content-Type, its type/boundary."""
        value = self._field_value(start, colon, end)
        clean = _clean_value(name, value)
        if clean is None:
            canonical, parsed, note = _canonical(name, value)
            if note:
                self._defect(f"{name.decode()} header {note}")
            self._replace(start, end, canonical)
        else:
            parsed = clean
        if name != b"content-type":
            return None
        return parsed

    def _field_value(self, start: int, colon: int, end: int) -> bytes:
        """The unfolded value of a field (taking an earlier truncation into account)."""
        kept = self._truncated.get(start)
        if kept is not None:
            return LINEBREAK.sub(b"", kept[kept.index(b":") + 1 :])
        return LINEBREAK.sub(b"", self.raw[colon + 1 : end])

    def _replace(self, start: int, end: int, field: bytes) -> None:
        """Record that ``raw[start:end]`` becomes ``field`` (replacing an earlier edit)."""
        if self.edits and self.edits[-1][0] == start:
            self.edits.pop()
        linebreak = LINEBREAK.search(self.raw, start, end)
        ending = linebreak.group(0) if linebreak else b"\n"
        self.edits.append((start, end, field + ending if field else b""))

    def _defect(self, text: str) -> None:
        """Record a defect (the list is capped; the count is kept)."""
        self.defects.append(text)

    def defect_list(self) -> list[str]:
        """The recorded defects, at most ``_MAX_DEFECTS`` plus a summary line."""
        if len(self.defects) <= _MAX_DEFECTS:
            return self.defects
        extra = len(self.defects) - _MAX_DEFECTS
        return [*self.defects[:_MAX_DEFECTS], f"... and {extra} more header defects"]

    def rewritten(self) -> bytes:
        """The message with every recorded edit applied."""
        if not self.edits:
            return self.raw
        out: list[bytes] = []
        pos = 0
        for start, end, replacement in sorted(self.edits):
            out.append(self.raw[pos:start])
            out.append(replacement)
            pos = end
        out.append(self.raw[pos:])
        return b"".join(out)


def _clean_value(name: bytes, value: bytes) -> tuple[str, bytes | None] | None:
    """(type, boundary) when ``value`` is simple enough to hand to the stdlib as it is."""
    if len(value) > _MAX_CLEAN:
        return None
    return _clean_short_value(name, value)


@functools.lru_cache(maxsize=512)
def _clean_short_value(name: bytes, value: bytes) -> tuple[str, bytes | None] | None:
    """``_clean_value`` of a value of at most ``_MAX_CLEAN`` bytes, worked out once per distinct
    field (most mail repeats a few Content-Type and Content-Transfer-Encoding values)."""
    match = _CLEAN[name].fullmatch(value)
    if match is None:
        return None
    params: dict[bytes, bytes] = {}
    for param in _PARAM.finditer(value):
        key = param.group(1).lower()
        if key in params or len(params) >= _MAX_PARAMS:
            return None
        params[key] = param.group(2).strip(b'"')
    boundary = params.get(b"boundary")
    if boundary is not None and (not boundary.strip() or b"=?" in boundary):
        return None
    return match.group(1).decode("ascii").lower(), boundary.rstrip() if boundary else None


def _canonical(name: bytes, value: bytes) -> tuple[bytes, tuple[str, bytes | None], str]:
    """A safe rewrite of a structural field: (new field, (type, boundary), defect note)."""
    note = ""
    if len(value) > _MAX_CANONICAL_INPUT:
        value, note = value[:_MAX_CANONICAL_INPUT], f"cut to {_MAX_CANONICAL_INPUT} bytes"
    text, cut = _first_params(strip_comments(_decode(value)), _MAX_PARAMS * 2)
    if cut:
        note = "; ".join(filter(None, [note, f"parameters beyond {_MAX_PARAMS * 2} dropped"]))
    if name == b"content-transfer-encoding":
        token = _CTE.search(text)
        field = b"Content-Transfer-Encoding: " + token.group(0).encode() if token else b""
        return field, ("", None), note
    message = email.message.Message()
    message["X"] = text.replace("\r", " ").replace("\n", " ")
    items = message.get_params(header="x", failobj=[])
    main = items[0][0].strip().lower() if items else ""
    pattern = _MIME_TYPE if name == b"content-type" else _DISPOSITION
    if not pattern.fullmatch(main):
        main = "text/plain" if name == b"content-type" else "attachment"
    params, boundary, dropped = _canonical_params(items[1:])
    if dropped:
        note = "; ".join(filter(None, [note, f"{dropped} parameters dropped"]))
    label = b"Content-Type: " if name == b"content-type" else b"Content-Disposition: "
    return label + main.encode() + params, (main, boundary), note


def _canonical_params(
    items: Sequence[tuple[str, str | tuple[str, str, str]]],
) -> tuple[bytes, bytes | None, int]:
    """Re-encode parameters; return (bytes, boundary, number of parameters dropped)."""
    out: list[bytes] = []
    seen: set[str] = set()
    boundary: bytes | None = None
    dropped = 0
    for key, raw_value in items:
        key = key.strip().lower().rstrip("*")
        value = email.utils.collapse_rfc2231_value(raw_value, "replace", "utf-8")
        value = str(value).strip()
        if not _DISPOSITION.fullmatch(key) or key in seen or len(out) >= _MAX_PARAMS:
            dropped += 1
            continue
        if len(value) > _MAX_PARAM_VALUE:
            value = value[:_MAX_PARAM_VALUE]
        seen.add(key)
        if key == "boundary":
            if not value or not _PRINTABLE.fullmatch(value) or "=?" in value:
                dropped += 1
                continue
            boundary = value.rstrip().encode("ascii")
        out.append(_encode_param(key, value))
    return b"".join(out), boundary, dropped


def _encode_param(key: str, value: str) -> bytes:
    """``; key="value"``, or RFC 2231 ``; key*=utf-8''...`` for anything not plain ASCII."""
    if _PRINTABLE.fullmatch(value):
        return f'; {key}="{value}"'.encode("ascii")
    return f"; {key}*={email.utils.encode_rfc2231(value, 'utf-8')}".encode("ascii")


def _decode(value: bytes) -> str:
    """Header bytes as text: UTF-8, else cp1252 (never fails)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("cp1252", "replace")


def _first_params(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut before its ``limit``-th top-level ";" (quotes respected); True if cut."""
    if text.count(";") <= limit:
        return text, False
    seen = 0
    for token in _SEMICOLON_TOKENS.finditer(text):
        if token.group(0) == ";":
            seen += 1
            if seen > limit:
                return text[: token.start()], True
    return text, False


def strip_comments(text: str) -> str:
    """Remove RFC 5322 comments (nested, outside quoted strings) in one linear pass."""
    if "(" not in text:
        return text
    out: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == "(":
            depth += 1
            continue
        elif char == ")" and depth:
            depth -= 1
            continue
        elif char == '"' and not depth:
            quoted = True
        if not depth:
            out.append(char)
    return "".join(out)
