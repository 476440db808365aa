"""Authentication-Results (RFC 8601): parsing, and whether a result vouches for a From domain.

Only the topmost header whose authserv-id we trust is read: a trusted border MTA adds its own
header above anything the sender wrote, so a forged copy lower down never counts. Whether the
header can be believed at all (which peer delivered the mail) is decided by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_HEADER_CHARS = 8192
_WORD = re.compile(r'(?:[^\s"]+|"(?:[^"\\]|\\.)*"?)+')


@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` clause with its ``ptype.property=value`` pairs (lower-cased keys)."""

    method: str
    result: str
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthResults:
    """One parsed Authentication-Results header."""

    authserv_id: str
    results: tuple[MethodResult, ...]


def parse(value: str) -> AuthResults | None:
    """Parse one header value; None when it has no authserv-id."""
    clauses = _split_clauses(_strip_comments(value[:MAX_HEADER_CHARS]))
    if not clauses or not clauses[0].split():
        return None
    authserv_id = _unquote(clauses[0].split()[0]).lower()
    results = tuple(r for r in (_method_result(c) for c in clauses[1:]) if r is not None)
    return AuthResults(authserv_id, results)


def first_trusted(headers: Iterable[str], trusted_ids: Iterable[str]) -> AuthResults | None:
    """The topmost header (``headers`` in message order) from a trusted authserv-id."""
    trusted = {t.strip().lower() for t in trusted_ids}
    for value in headers:
        parsed = parse(value)
        if parsed is not None and parsed.authserv_id in trusted:
            return parsed
    return None


def vouches_for(results: AuthResults, from_domain: str) -> str | None:
    """Which passing method aligns with ``from_domain`` ("dkim", "spf", "dmarc"), or None.

    DKIM: ``header.d`` equals the From domain or is a parent of it (relaxed alignment).
    SPF: the domain of ``smtp.mailfrom`` aligns the same way. DMARC: ``header.from`` equals it.
    """
    domain = from_domain.strip().lower().rstrip(".")
    for item in results.results:
        if item.result != "pass":
            continue
        props = item.properties
        if item.method == "dkim" and aligned(props.get("header.d", ""), domain):
            return "dkim"
        if item.method == "spf":
            mailfrom = props.get("smtp.mailfrom", "").rpartition("@")[2]
            if aligned(mailfrom, domain):
                return "spf"
        if item.method == "dmarc" and props.get("header.from", "").rstrip(".") == domain:
            return "dmarc"
    return None


def aligned(candidate: str, from_domain: str) -> bool:
    """True when ``candidate`` is ``from_domain`` or a parent domain of it (at least two labels)."""
    candidate = candidate.strip().lower().rstrip(".")
    if "." not in candidate or not from_domain:
        return False
    return from_domain == candidate or from_domain.endswith("." + candidate)


def _method_result(clause: str) -> MethodResult | None:
    words = _WORD.findall(clause)
    if not words or "=" not in words[0]:
        return None
    method, _, result = words[0].partition("=")
    properties: dict[str, str] = {}
    for word in words[1:]:
        key, sep, val = word.partition("=")
        if sep and key.lower() not in properties:
            properties[key.lower()] = _unquote(val).lower()
    return MethodResult(method.partition("/")[0].lower(), result.lower(), properties)


def _strip_comments(value: str) -> str:
    """Drop (nested) comments outside quoted strings; keep quoted strings intact."""
    out: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
            if depth == 0:
                out.append(char)
        elif quoted:
            quoted = char != '"'
            out.append(char)
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth == 0:
            quoted = char == '"'
            out.append(char)
    return "".join(out)


def _split_clauses(value: str) -> list[str]:
    """Split on semicolons outside quoted strings."""
    clauses: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = quoted
        elif char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            clauses.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    clauses.append("".join(current).strip())
    return [c for c in clauses if c] if clauses[0] else []


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value
