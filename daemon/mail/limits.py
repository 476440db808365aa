"""Cheap byte-level pre-scan that enforces hard limits before the stdlib parser runs.

The stdlib ``email`` package is slow or crashes on hostile structure (RELIABILITY §G): deep
nesting raises ``RecursionError``, 100,000 parts take 14 s, and its header parser is quadratic
(a 16 KB ``Content-Type`` full of comments takes seconds). So before it runs, ``check``:

* walks the MIME skeleton the way ``email.feedparser`` does (header blocks, boundary lines that
  end at ``\\r\\n``, ``\\r`` or ``\\n``, the *outermost* matching boundary wins, ``message/*``
  bodies are nested messages) without recursion and mostly at regex speed, counting parts and
  nesting depth: beyond ``max_parts`` / ``max_depth`` it raises ``LimitExceeded``;
* rejects a header section larger than ``max_header_section``;
* has ``mimefields.FieldEdits`` cut every header field longer than ``max_header_bytes`` and
  rewrite ``Content-Type``, ``Content-Disposition`` and ``Content-Transfer-Encoding`` fields
  that are not in a simple, well-formed shape into a canonical one, so the stdlib only ever
  parses simple structural headers, and sees exactly the structure this scan counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from postdesk.daemon.mail.fields import LINEBREAK, STRUCTURAL_FIELDS, FieldEdits

__all__ = ["Head", "LimitExceeded", "Limits", "Prescan", "check"]

_COLON = ord(":")
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")  # email.feedparser.headerRE


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
    head: Head | None = None  # the top header block, when it is plain (see ``Head``)


@dataclass(frozen=True)
class Head:
    """A plain top header block: its fields follow one another from the first byte (no
    envelope ``From`` line, no continuation line before a field, no field without a name, none
    cut or rewritten) and a blank line ends it; what the stdlib parser makes of such a block
    is one header per field, in order."""

    fields: tuple[tuple[int, int], ...]  # (start, end) of each field, its line ending included
    body_start: int  # just after the blank line


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
    edits = scan.edits
    rewritten = edits.rewritten()
    head = scan.head if rewritten is raw else None
    return Prescan(rewritten, tuple(edits.defect_list()), scan.parts, scan.max_depth, head)


class _Scanner:
    """One pass over the MIME skeleton; see the module docstring."""

    def __init__(self, raw: bytes, limits: Limits) -> None:
        self.raw = raw
        self.limits = limits
        self.stack: list[_Frame] = []
        self.parts = 0
        self.max_depth = 0
        self.edits = FieldEdits(raw, limits.max_header_bytes)
        self.head: Head | None = None  # the top header block, when plain
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
            size -= self.edits.limit_field(f_start, f_end)
            colon = self.raw.index(b":", f_start, f_end)
            name = self.raw[f_start:colon].lower()
            if name in STRUCTURAL_FIELDS and name not in seen:
                seen.add(name)
                found = self.edits.structural(name, f_start, colon, f_end)
                if found is not None:
                    ctype, boundary = found
        if size > self.limits.max_header_section:
            where = "message" if top else "MIME part"
            raise LimitExceeded(
                f"{where} header section larger than {self.limits.max_header_section} bytes"
            )
        if top and delimiter is None:
            self.head = _plain_head(self.raw, fields, body)
        return _Block(body, ctype, boundary, delimiter)


def _plain_head(raw: bytes, fields: list[tuple[int, int]], body: int) -> Head | None:
    """The top header block ``fields``, ending where ``body`` starts, as a ``Head`` when it
    is plain (see there), else None."""
    end = 0
    for start, stop in fields:
        if start != end or raw[start] == _COLON:
            return None
        end = stop
    if not fields or LINEBREAK.fullmatch(raw, end, body) is None:
        return None
    return Head(tuple(fields), body)


def _line_end(raw: bytes, pos: int) -> tuple[int, int]:
    """(end of the line's content, start of the next line) for the line at ``pos``."""
    match = LINEBREAK.search(raw, pos)
    if match is None:
        return len(raw), len(raw)
    return match.start(), match.end()
