"""Cheap byte-level pre-scan that enforces hard limits before the stdlib parser runs.

The stdlib ``email`` package is slow or crashes on hostile structure (RELIABILITY §G): deep
nesting raises ``RecursionError``, 100,000 parts take 14 s, and its header parser is quadratic
(a 16 KB ``Content-Type`` full of comments takes seconds). So before it runs, ``check``:

* walks the MIME skeleton the way ``email.feedparser`` does (header blocks, boundary lines that
  end at ``\\r\\n``, ``\\r`` or ``\\n``, the *outermost* matching boundary wins, ``message/*``
  bodies are nested messages) without recursion and mostly at regex speed, counting parts and
  nesting depth: beyond ``max_parts`` / ``max_depth`` it raises ``LimitExceeded``;
* rejects a header section larger than ``max_header_section``;
* cuts every header field longer than ``max_header_bytes`` (a defect is recorded);
* rewrites ``Content-Type``, ``Content-Disposition`` and ``Content-Transfer-Encoding`` fields
  that are not in a simple, well-formed shape into a canonical one (comments dropped, at most
  ``_MAX_PARAMS`` parameters, RFC 2231 values re-encoded), so the stdlib only ever parses
  simple structural headers, and sees exactly the structure this scan counted.
"""

from __future__ import annotations

import email.message
import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["LimitExceeded", "Limits", "Prescan", "check", "strip_comments"]

_MAX_PARAMS = 12
_MAX_CLEAN = 1024  # longer structural fields are always rewritten
_MAX_CANONICAL_INPUT = 4096
_MAX_PARAM_VALUE = 1000
_MAX_DEFECTS = 20

_LINEBREAK = re.compile(rb"\r\n|\r|\n")
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")  # email.feedparser.headerRE
_FOLD = re.compile(rb"\r\n|\r|\n")
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


class LimitExceeded(Exception):
    """The message breaks a hard structural limit; ``reason`` is one line for the operator."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Limits(Protocol):
    """The limits this module enforces (``mailparse.ParseLimits`` satisfies it)."""

    @property
    def max_depth(self) -> int: ...
    @property
    def max_parts(self) -> int: ...
    @property
    def max_header_bytes(self) -> int: ...
    @property
    def max_header_section(self) -> int: ...


@dataclass(frozen=True)
class Prescan:
    """Result of ``check``: the bytes to hand to the stdlib parser, and what was changed."""

    raw: bytes
    defects: tuple[str, ...]
    parts: int
    depth: int


@dataclass
class _Frame:
    """An open container: a multipart (with its boundary) or a nested message (None)."""

    boundary: bytes | None
    digest: bool = False


@dataclass(frozen=True)
class _Block:
    """What a header block told the scan."""

    body_start: int
    content_type: str
    boundary: bytes | None
    delimiter: re.Match[bytes] | None  # a boundary line met inside the header block


def check(raw: bytes, limits: Limits) -> Prescan:
    """Verify the limits on ``raw`` and return the (possibly rewritten) bytes to parse.

    Raises ``LimitExceeded`` for too deep nesting, too many parts or too large a header section.
    """
    scan = _Scanner(raw, limits)
    scan.run()
    return Prescan(scan.rewritten(), tuple(scan.defect_list()), scan.parts, scan.max_depth)


class _Scanner:
    """One pass over the MIME skeleton; see the module docstring."""

    def __init__(self, raw: bytes, limits: Limits) -> None:
        self.raw = raw
        self.limits = limits
        self.stack: list[_Frame] = []
        self.parts = 0
        self.max_depth = 0
        self.edits: list[tuple[int, int, bytes]] = []
        self._truncated: dict[int, bytes] = {}  # field start -> truncated field
        self.defects: list[str] = []
        self._patterns: dict[tuple[bytes, ...], re.Pattern[bytes] | None] = {}

    def run(self) -> None:
        """Scan the whole message."""
        pos, default = 0, "text/plain"
        while True:
            block = self._header_block(pos, top=pos == 0)
            if block.delimiter is not None:  # a boundary line ended the header block
                step = self._handle_delimiter(block.delimiter)
                found = self._scan_body(step) if isinstance(step, int) else step
            elif self._enter(block.content_type or default, block.boundary):
                pos, default = block.body_start, "text/plain"  # a nested message/rfc822
                continue
            else:
                found = self._scan_body(block.body_start)
            if found is None:
                return
            pos, default = found

    def _enter(self, ctype: str, boundary: bytes | None) -> bool:
        """Open a container for a multipart or message/* body; True for a nested message."""
        if ctype.startswith("multipart/") and boundary:
            self.stack.append(_Frame(boundary, digest=ctype == "multipart/digest"))
        elif ctype.startswith("message/") and ctype != "message/delivery-status":
            self.stack.append(_Frame(None))
            self._count_part()
            return True
        return False

    def _scan_body(self, pos: int) -> tuple[int, str] | None:
        """Skip a body up to the next part; None at the end of the message."""
        while True:
            match = self._next_delimiter(pos)
            if match is None:
                return None
            found = self._handle_delimiter(match)
            if not isinstance(found, int):
                return found
            pos = found

    def _count_part(self) -> None:
        """Count one more part at the current depth and enforce both limits."""
        self.parts += 1
        depth = len(self.stack)
        self.max_depth = max(self.max_depth, depth)
        if depth > self.limits.max_depth:
            raise LimitExceeded(f"MIME nesting deeper than {self.limits.max_depth}")
        if self.parts > self.limits.max_parts:
            raise LimitExceeded(f"more than {self.limits.max_parts} MIME parts")

    def _handle_delimiter(self, match: re.Match[bytes]) -> tuple[int, str] | int:
        """Apply a boundary line: (start, default type) of a new part, or where to go on."""
        boundary = match.group("b")
        index = next(i for i, frame in enumerate(self.stack) if frame.boundary == boundary)
        frame = self.stack[index]  # the outermost match wins, as in the feedparser
        del self.stack[index + 1 :]
        end = _line_end(self.raw, match.end())[1]
        if match.group("close"):
            del self.stack[index]
            return end
        self._count_part()
        return end, "message/rfc822" if frame.digest else "text/plain"

    def _pattern(self) -> re.Pattern[bytes] | None:
        """A regex matching delimiter lines of every open boundary (None when there is none)."""
        key = tuple(frame.boundary for frame in self.stack if frame.boundary is not None)
        if key not in self._patterns:
            if not key:
                self._patterns[key] = None
            else:
                alts = b"|".join(re.escape(b) for b in sorted(set(key), key=len, reverse=True))
                self._patterns[key] = re.compile(
                    rb"(?<![^\r\n])--(?P<b>" + alts + rb")(?P<close>--)?[ \t]*(?=\r|\n|\Z)"
                )
        return self._patterns[key]

    def _next_delimiter(self, pos: int) -> re.Match[bytes] | None:
        """The next boundary line at or after ``pos``."""
        pattern = self._pattern()
        return None if pattern is None else pattern.search(self.raw, pos)

    def _header_block(self, pos: int, top: bool) -> _Block:
        """Read one header block like the feedparser; cut long fields, canonicalise MIME ones."""
        raw, pattern = self.raw, self._pattern()
        fields: list[tuple[int, int]] = []
        start = pos
        while pos < len(raw):
            line_end, nxt = _line_end(raw, pos)
            if pattern is not None and raw.startswith(b"--", pos):
                match = pattern.match(raw, pos)
                if match:
                    return self._finish_block(start, pos, fields, top, match)
            if line_end == pos:  # the blank separator line
                return self._finish_block(start, nxt, fields, top, None)
            if raw[pos] in b" \t":
                if fields:
                    fields[-1] = (fields[-1][0], nxt)
            elif not _HEADER_LINE.match(raw, pos):
                return self._finish_block(start, pos, fields, top, None)
            elif not raw.startswith(b"From ", pos):
                fields.append((pos, nxt))
            pos = nxt
        return self._finish_block(start, pos, fields, top, None)

    def _finish_block(
        self,
        start: int,
        body: int,
        fields: list[tuple[int, int]],
        top: bool,
        delimiter: re.Match[bytes] | None,
    ) -> _Block:
        """Apply the size limits to a header block and read its structural fields."""
        size = body - start
        seen: set[bytes] = set()
        ctype, boundary = "", None
        for f_start, f_end in fields:
            size -= self._limit_field(f_start, f_end)
            colon = self.raw.index(b":", f_start, f_end)
            name = self.raw[f_start:colon].lower()
            if name in _CLEAN and name not in seen:
                seen.add(name)
                found = self._structural(name, f_start, colon, f_end)
                if found is not None:
                    ctype, boundary = found
        if size > self.limits.max_header_section:
            where = "message" if top else "MIME part"
            raise LimitExceeded(
                f"{where} header section larger than {self.limits.max_header_section} bytes"
            )
        return _Block(body, ctype, boundary, delimiter)

    def _limit_field(self, start: int, end: int) -> int:
        """Truncate one header field over ``max_header_bytes``; return the bytes removed."""
        limit = self.limits.max_header_bytes
        if end - start <= limit:
            return 0
        field = self.raw[start:end]
        linebreak = _LINEBREAK.search(field)
        ending = linebreak.group(0) if linebreak else b"\n"
        kept = field[:limit].rstrip(b"\r\n") + ending
        name = field.split(b":", 1)[0][:60].decode("ascii", "replace")
        self._defect(f"header {name} truncated from {end - start} to {limit} bytes")
        self.edits.append((start, end, kept))
        self._truncated[start] = kept
        return (end - start) - len(kept)

    def _structural(
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
            return _FOLD.sub(b"", kept[kept.index(b":") + 1 :])
        return _FOLD.sub(b"", self.raw[colon + 1 : end])

    def _replace(self, start: int, end: int, field: bytes) -> None:
        """Record that ``raw[start:end]`` becomes ``field`` (replacing an earlier edit)."""
        if self.edits and self.edits[-1][0] == start:
            self.edits.pop()
        linebreak = _LINEBREAK.search(self.raw, start, end)
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


def _line_end(raw: bytes, pos: int) -> tuple[int, int]:
    """(end of the line's content, start of the next line) for the line at ``pos``."""
    match = _LINEBREAK.search(raw, pos)
    if match is None:
        return len(raw), len(raw)
    return match.start(), match.end()


def _clean_value(name: bytes, value: bytes) -> tuple[str, bytes | None] | None:
    """(type, boundary) when ``value`` is simple enough to hand to the stdlib as it is."""
    if len(value) > _MAX_CLEAN:
        return None
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
