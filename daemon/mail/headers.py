"""Header values as text (8-bit bytes, RFC 2047 encoded words), and strict address parsing.

Header values are read raw and decoded here instead of through the stdlib's slow
structured-header classes. Address lists are split and each address cross-checked against its
text (CVE-2023-27043): an ambiguous or malformed address is dropped with a defect, never guessed.
"""

from __future__ import annotations

import binascii
import email.utils
import inspect
import re
from email.message import Message

from postdesk.daemon.mail.charset import decode_bytes, decode_header_bytes
from postdesk.daemon.mail.fields import strip_comments

__all__ = [
    "decode_header_value",
    "decode_words",
    "header_text",
    "one_line",
    "parse_addresses",
    "raw_values",
]

# --- header values: 8-bit bytes, RFC 2047 encoded words -------------------------------------

# Encoded text may (wrongly, but commonly) contain spaces: "=?us-ascii?Q?A B?=".
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([bBqQ])\?([^?\r\n]*?)\?=")
_LINEBREAKS = re.compile(r"[\r\n]")
_SUBJECT_DROP = re.compile(r"[\r\n\x00\u2028\u2029]")
_SPACES = re.compile(r"\s+")
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f]")  # what one_line drops besides _SUBJECT_DROP


def header_text(value: str, name: str, defects: list[str], hints: tuple[str, ...] = ()) -> str:
    """A raw header value as text: 8-bit bytes decoded, unfolded.

    Raw 8-bit bytes go to ``mailcharset.decode_header_bytes``, with the charsets the message
    declares as ``hints``.
    """
    if not value.isascii():  # BytesParser keeps 8-bit bytes as surrogate escapes
        defects.append(f"header {name} contains raw 8-bit bytes")
        value = decode_header_bytes(value.encode("ascii", "surrogateescape"), hints, defects, name)
    return _LINEBREAKS.sub("", value).replace("\x00", "")


def decode_header_value(
    value: str, name: str, defects: list[str], hints: tuple[str, ...] = ()
) -> str:
    """A raw header value fully decoded: 8-bit bytes, unfolding, RFC 2047 encoded words."""
    value = header_text(value, name, defects, hints)
    return decode_words(value, defects) if "=?" in value else value


def decode_words(text: str, defects: list[str]) -> str:
    """Decode RFC 2047 encoded words; adjacent words in one charset are joined first.

    Whitespace between two encoded words is dropped, as RFC 2047 section 6.2 says.
    """
    out: list[str] = []
    pending: list[bytes] = []
    charset = ""
    pos = 0
    after_word = False
    for match in _ENCODED_WORD.finditer(text):
        gap = text[pos : match.start()]
        skip_gap = after_word and not gap.strip()
        word_charset = match.group(1).split("*", 1)[0].lower()
        data = _word_bytes(match.group(2).lower(), match.group(3), defects)
        if pending and (not skip_gap or data is None or word_charset != charset):
            out.append(decode_bytes(b"".join(pending), charset, defects, "encoded word"))
            pending = []
        if not skip_gap:
            out.append(gap)
        if data is None:
            out.append(match.group(0))
        else:
            pending.append(data)
            charset = word_charset
        after_word = data is not None
        pos = match.end()
    if pending:
        out.append(decode_bytes(b"".join(pending), charset, defects, "encoded word"))
    out.append(text[pos:])
    return "".join(out)


def _word_bytes(encoding: str, payload: str, defects: list[str]) -> bytes | None:
    """The bytes of one encoded word, or None (and a defect) when it is not decodable."""
    try:
        data = payload.encode("ascii")
        if encoding == "q":
            return binascii.a2b_qp(data, header=True)
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        defects.append("undecodable encoded word kept as is")
        return None


def raw_values(message: Message, name: str) -> list[str]:
    """The raw (undecoded) values of every header called ``name``."""
    return [value for key, value in message.raw_items() if key.strip().lower() == name]


def one_line(text: str) -> str:
    """``text`` without CR, LF, NUL, U+2028/2029 and other controls, whitespace collapsed."""
    text = _SUBJECT_DROP.sub("", text)
    if _CONTROLS.search(text):
        text = "".join(ch for ch in text if ch >= " " or ch == "\t")
    return _SPACES.sub(" ", text).strip()


# --- addresses (strict, CVE-2023-27043) ------------------------------------------------------

_GETADDRESSES_STRICT = "strict" in inspect.signature(email.utils.getaddresses).parameters
_ADDR_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|\\.?|[(),<>:;]|[^"\\(),<>:;]+')
_ATOMS = r"[^\s@<>()\[\],;:\"\\\x00-\x1f\x7f]+"
_LOCAL = re.compile(rf'(?:{_ATOMS}|"(?:[^"\\\r\n]|\\.)*")')
_DOMAIN = re.compile(rf"{_ATOMS}")
_MAX_COMMENT_DEPTH = 32
_PLAIN_ADDR = r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,10}"
# An unquoted display name with an "@" before exactly one angle address, nothing after it.
_ANGLE_NAME = re.compile(r'([^<>"\\,;:()\[\]]*)<\s*([^<>\s"\\(),;:]+)\s*>\s*')
_SIMPLE_ADDRESS = re.compile(
    rf'(?:"([^"\\\r\n]*)"|([A-Za-z0-9 ._\'\-]*?))[ \t]*<({_PLAIN_ADDR})>|({_PLAIN_ADDR})'
)


def parse_addresses(value: str, name: str, limit: int, defects: list[str]) -> list[tuple[str, str]]:
    """(display name, lower-case addr-spec) pairs; ambiguous entries are dropped (defect)."""
    value = _LINEBREAKS.sub("", value)
    items = _split_addresses(value)
    if items is None:
        defects.append(f"{name}: unbalanced quotes, comments or brackets; addresses ignored")
        return []
    if len(items) > limit:
        defects.append(f"{name}: {len(items)} addresses, only the first {limit} kept")
        items = items[:limit]
    found: list[tuple[str, str]] = []
    bad = 0
    for item in items:
        parsed = _one_address(item)
        if parsed is None:
            bad += 1
        else:
            found.append((decode_words(parsed[0], defects), parsed[1]))
    if bad:
        defects.append(f"{name}: {bad} unparseable or ambiguous address(es) ignored")
    return found


def _split_addresses(value: str) -> list[str] | None:
    """Split an address list at top-level commas (group names dropped); None if unbalanced."""
    items: list[str] = []
    current: list[str] = []
    depth = angle = 0
    for token in _ADDR_TOKEN.findall(value):
        if token.startswith('"') and (len(token) < 2 or not token.endswith('"')):
            return None
        if token == "(":
            depth += 1
            if depth > _MAX_COMMENT_DEPTH:
                return None
        elif token == ")" and depth:
            depth -= 1
        elif depth:
            pass
        elif token in "<>":
            angle += 1 if token == "<" else -1
            if angle not in (0, 1):
                return None
        elif angle == 0 and token in ",;":
            items.append("".join(current))
            current = []
            continue
        elif angle == 0 and token == ":":
            current = []  # "group name:" is not an address
            continue
        current.append(token)
    if depth or angle:
        return None
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def _one_address(item: str) -> tuple[str, str] | None:
    """Parse one address with the stdlib and cross-check the result against the text."""
    simple = _SIMPLE_ADDRESS.fullmatch(item)
    if simple:  # fast path for the plain forms the stdlib would parse the same way
        display = simple.group(1) if simple.group(1) is not None else simple.group(2) or ""
        return _SPACES.sub(" ", display).strip(), (simple.group(3) or simple.group(4)).lower()
    at_name = _ANGLE_NAME.fullmatch(item)
    if at_name and "@" in at_name.group(1):  # "Alert@Paxil <x@example.com>": the name is a name
        return _checked(at_name.group(1), at_name.group(2))
    if _GETADDRESSES_STRICT:
        result = email.utils.getaddresses([item], strict=True)  # type: ignore[call-arg,unused-ignore]
    else:
        result = email.utils.getaddresses([item])
    if len(result) != 1:
        return None
    display, addr = result[0]
    addr = addr.strip()
    if "<" in item:
        if not re.search(r"<\s*" + re.escape(addr) + r"\s*>", item):
            return None
    elif _SPACES.sub("", strip_comments(item)) != addr:
        return None
    return _checked(display, addr)


def _checked(display: str, addr: str) -> tuple[str, str] | None:
    """(display, addr) when ``addr`` is a well-formed addr-spec, lower-cased; else None."""
    local, at, domain = addr.rpartition("@")
    if not (at and _LOCAL.fullmatch(local) and _DOMAIN.fullmatch(domain)):
        return None
    if ".." in domain or domain.startswith(".") or domain == ".":
        return None
    return _SPACES.sub(" ", display).strip(), addr.removesuffix(".").lower()
