"""Parse raw mail into a ParsedMessage with the stdlib ``email`` package, within hard limits.

Hostile mail must not stall or crash the worker (RELIABILITY §G): ``mimelimits.check`` enforces
the structure limits on the raw bytes and cuts oversized headers *before* the stdlib parser
runs; header values are then read raw and decoded here (8-bit bytes, RFC 2047 words) instead of
through the stdlib's slow structured-header classes; addresses are parsed strictly; text parts
are decoded with a charset fallback chain. Every problem becomes a line in ``defects``, or, when
nothing sensible can be produced, ``MessageRejected``.
"""

from __future__ import annotations

import binascii
import codecs
import email.policy
import email.utils
import functools
import hashlib
import inspect
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

from postdesk.daemon import mimelimits
from postdesk.daemon.filenames import safe_filename
from postdesk.daemon.htmltext import html_to_text
from postdesk.daemon.replytext import extract_new_text

__all__ = ["Attachment", "MessageRejected", "ParseLimits", "ParsedMessage", "parse_message"]

_PARSER = BytesParser(policy=email.policy.default)
_MESSAGE_ID = re.compile(r"<[^<>\s\x00-\x1f\x7f]{1,996}>")
_BARE_ID = re.compile(r"[^<>\s\"(),;:\\]{1,996}@[^<>\s\"(),;:\\]{1,996}")
_SUBJECT_DROP = re.compile(r"[\r\n\x00\u2028\u2029]")
_SPACES = re.compile(r"\s+")
_RECIPIENTS = ("to", "cc", "reply-to")
_MAX_SUBJECT = 998
_MAX_REFERENCES = 100
_MAX_STDLIB_DEFECTS = 20


class MessageRejected(Exception):
    """The message breaks a hard limit or cannot be parsed at all; `reason` says why (one line)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ParseLimits:
    """Hard limits applied before and during parsing (Postfix-like numbers)."""

    max_depth: int = 50  # MIME nesting
    max_parts: int = 1000
    max_header_bytes: int = 16384  # one header; longer ones are truncated and a defect recorded
    max_header_section: int = 102400
    max_addresses: int = 1000  # per address header; extra dropped + defect


@dataclass(frozen=True)
class Attachment:
    """A file carried by a message (also inline images and forwarded messages as .eml)."""

    filename: str  # safe display name (filenames.safe_filename)
    content_type: str  # e.g. "image/png"
    data: bytes  # decoded payload
    inline: bool  # Content-Disposition inline (or none) with a Content-ID (inline image)
    content_id: str | None  # without the angle brackets, as referenced by "cid:" URLs


@dataclass(frozen=True)
class ParsedMessage:
    """Everything the pipeline needs from one message."""

    message_id: str  # "<...>" as in the header; else "<sha256(raw)[:32]@generated.postdesk>"
    message_id_generated: bool
    from_addr: str | None  # lower-cased addr-spec; None when absent/ambiguous/unparseable
    from_name: str  # display name (may be "")
    to: tuple[str, ...]  # lower-cased addr-specs
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    subject: str  # decoded, CR/LF/NUL/U+2028/U+2029 removed, whitespace collapsed, <= 998 chars
    date: datetime | None  # timezone-aware or None
    in_reply_to: tuple[str, ...]  # message ids "<...>"
    references: tuple[str, ...]  # message ids "<...>" in order, the last 100
    text: str  # first text/plain part, else the HTML converted to text, else ""
    new_text: str  # replytext.extract_new_text(text)
    html: str | None  # the HTML body if there was one (raw, NOT sanitised; never rendered by us)
    attachments: tuple[Attachment, ...]
    headers: dict[str, tuple[str, ...]]  # lower-case name -> decoded values (<= max_header_bytes)
    defects: tuple[str, ...]  # human-readable notes: fallbacks, truncations, stdlib defects
    content_type: str  # top-level content type, e.g. "multipart/report"
    report_type: str | None  # for multipart/report: "delivery-status", ...

    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive) or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def header_all(self, name: str) -> tuple[str, ...]:
        """Every value of a header (case-insensitive), in message order."""
        return self.headers.get(name.lower(), ())


def parse_message(raw: bytes, limits: ParseLimits = ParseLimits()) -> ParsedMessage:
    """Parse raw RFC 5322 bytes; never raises anything but MessageRejected."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MessageRejected(f"raw message is {type(raw).__name__}, not bytes")
    try:
        return _parse(bytes(raw), limits)
    except MessageRejected:
        raise
    except mimelimits.LimitExceeded as exc:
        raise MessageRejected(exc.reason) from None
    except RecursionError:
        raise MessageRejected("message structure too deeply nested for the parser") from None
    except Exception as exc:  # any other stdlib failure: quarantine rather than crash
        raise MessageRejected(f"message cannot be parsed ({type(exc).__name__})") from None


def _parse(raw: bytes, limits: ParseLimits) -> ParsedMessage:
    """The parse proper; may raise anything (``parse_message`` translates)."""
    prescan = mimelimits.check(_strip_mbox_from(raw), limits)
    defects = list(prescan.defects)
    message = _PARSER.parsebytes(prescan.raw)
    hint = _charset_hint(message)
    headers = _headers(message, limits, hint, defects)
    from_addr, from_name = _sender(message, limits, hint, defects)
    message_id, generated = _message_id(headers, raw, defects)
    to, cc, reply_to = (_recipients(message, name, limits, hint, defects) for name in _RECIPIENTS)
    date = _date(headers, defects)
    body = collect_body(message, defects)
    content_type = _info(message).ctype
    defects.extend(_stdlib_defects(message))
    return ParsedMessage(
        message_id=message_id,
        message_id_generated=generated,
        from_addr=from_addr,
        from_name=from_name,
        to=to,
        cc=cc,
        reply_to=reply_to,
        subject=_subject(headers),
        date=date,
        in_reply_to=_ids(headers.get("in-reply-to", ())),
        references=_ids(headers.get("references", ()))[-_MAX_REFERENCES:],
        text=body.text,
        new_text=extract_new_text(body.text),
        html=body.html,
        attachments=tuple(body.attachments),
        headers=headers,
        defects=tuple(_printable(note) for note in defects),
        content_type=content_type,
        report_type=_report_type(message, content_type),
    )


def _strip_mbox_from(raw: bytes) -> bytes:
    """Drop a leading mbox ``From `` envelope line."""
    if not raw.startswith(b"From "):
        return raw
    match = re.search(rb"\r\n|\r|\n", raw)
    return raw[match.end() :] if match else b""


def _charset_hint(message: Message) -> tuple[str, ...]:
    """For raw 8-bit headers: the charsets the parts declare (only looked up when needed)."""
    if all(value.isascii() for _name, value in message.raw_items()):
        return ()
    found: dict[str, None] = {}
    for part in message.walk():
        charset = _info(part).charset
        if charset:
            found.setdefault(charset.lower(), None)
    return tuple(found)


def _headers(
    message: Message, limits: ParseLimits, hint: tuple[str, ...], defects: list[str]
) -> dict[str, tuple[str, ...]]:
    """Every top-level header, lower-case name -> decoded values."""
    collected: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        key = name.strip().lower()
        decoded = decode_header_value(value, key, defects, hint)[: limits.max_header_bytes]
        collected.setdefault(key, []).append(decoded)
    return {key: tuple(values) for key, values in collected.items()}


def _raw_values(message: Message, name: str) -> list[str]:
    """The raw (undecoded) values of every header called ``name``."""
    return [value for key, value in message.raw_items() if key.strip().lower() == name]


def _sender(
    message: Message, limits: ParseLimits, hint: tuple[str, ...], defects: list[str]
) -> tuple[str | None, str]:
    """(address, display name) of the single unambiguous From address, else (None, "")."""
    values = _raw_values(message, "from")
    if len(values) != 1:
        if values:
            defects.append(f"{len(values)} From headers: sender is ambiguous")
        return None, ""
    text = header_text(values[0], "from", [], hint)
    found = parse_addresses(text, "from", limits.max_addresses, defects)
    if len(found) != 1:
        if found:
            defects.append(f"From names {len(found)} addresses: sender is ambiguous")
        return None, ""
    name, addr = found[0]
    return addr, _one_line(name)


def _recipients(
    message: Message, name: str, limits: ParseLimits, hint: tuple[str, ...], defects: list[str]
) -> tuple[str, ...]:
    """Lower-cased addresses of every header called ``name`` (duplicates removed)."""
    found: dict[str, None] = {}
    for value in _raw_values(message, name):
        text = header_text(value, name, [], hint)
        for _display, addr in parse_addresses(text, name, limits.max_addresses, defects):
            found.setdefault(addr, None)
    return tuple(found)[: limits.max_addresses]


def _message_id(
    headers: dict[str, tuple[str, ...]], raw: bytes, defects: list[str]
) -> tuple[str, bool]:
    """The Message-ID as "<...>", or a stable one derived from the raw bytes."""
    values = headers.get("message-id", ())
    if len(values) > 1:
        defects.append(f"{len(values)} Message-ID headers; the first is used")
    value = values[0].strip() if values else ""
    match = _MESSAGE_ID.search(value)
    if match:
        return match.group(0), False
    bare = _BARE_ID.fullmatch(value)
    if bare:
        defects.append("Message-ID without angle brackets")
        return f"<{value}>", False
    if value:
        defects.append("unusable Message-ID replaced by a generated one")
    return f"<{hashlib.sha256(raw).hexdigest()[:32]}@generated.postdesk>", True


def _ids(values: tuple[str, ...]) -> tuple[str, ...]:
    """Every "<...>" message id in the given header values, in order."""
    return tuple(match for value in values for match in _MESSAGE_ID.findall(value))


def _one_line(text: str) -> str:
    """``text`` without CR, LF, NUL, U+2028/2029 and other controls, whitespace collapsed."""
    text = _SUBJECT_DROP.sub("", text)
    text = "".join(ch for ch in text if ch >= " " or ch == "\t")
    return _SPACES.sub(" ", text).strip()


def _subject(headers: dict[str, tuple[str, ...]]) -> str:
    """The decoded first Subject on one line, at most 998 characters."""
    values = headers.get("subject", ())
    return _one_line(values[0])[:_MAX_SUBJECT] if values else ""


def _date(headers: dict[str, tuple[str, ...]], defects: list[str]) -> datetime | None:
    """The Date header as an aware datetime (-0000 means UTC), or None."""
    values = headers.get("date", ())
    if not values or not values[0].strip():
        return None
    try:
        parsed = parsedate_to_datetime(values[0].strip()[:200])
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append("unparseable Date header")
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _printable(note: str) -> str:
    """A defect note without control characters or lone surrogates, at most 300 chars."""
    note = _no_surrogates(note)[:300]
    return "".join(ch if ch >= " " else " " for ch in note) if not note.isprintable() else note


def _report_type(message: Message, content_type: str) -> str | None:
    """The report-type of a multipart/report ("delivery-status", ...), else None."""
    if content_type != "multipart/report":
        return None
    value = message.get_param("report-type")
    return str(value).strip().lower() or None if isinstance(value, str) else None


def _stdlib_defects(message: Message) -> list[str]:
    """The stdlib's own defect notes from every part (deduplicated, capped)."""
    seen: dict[str, None] = {}
    for part in message.walk():
        for defect in getattr(part, "defects", []):
            note = f"stdlib: {type(defect).__name__}"
            detail = str(defect).strip()
            seen.setdefault(f"{note} ({detail[:120]})" if detail else note, None)
    notes = list(seen)
    if len(notes) > _MAX_STDLIB_DEFECTS:
        notes = [
            *notes[:_MAX_STDLIB_DEFECTS],
            f"... and {len(notes) - _MAX_STDLIB_DEFECTS} more stdlib defects",
        ]
    return notes


# --- header values: 8-bit bytes, RFC 2047 encoded words -------------------------------------

# Encoded text may (wrongly, but commonly) contain spaces: "=?us-ascii?Q?A B?=".
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([bBqQ])\?([^?\r\n]*?)\?=")
_LINEBREAKS = re.compile(r"[\r\n]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso8859-1": "cp1252",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "unicode-1-1-utf-7": "utf-7",
}
_REFUSED_CODECS = frozenset(
    {"idna", "punycode", "raw_unicode_escape", "unicode_escape", "undefined", "mbcs", "oem"}
)


def header_text(value: str, name: str, defects: list[str], hints: tuple[str, ...] = ()) -> str:
    """A raw header value as text: 8-bit bytes decoded, unfolded.

    Raw 8-bit bytes are tried as UTF-8, then as each charset the message declares (multi-byte
    ones first: a single-byte charset accepts anything), then cp1252 with replacement.
    """
    if not value.isascii():  # BytesParser keeps 8-bit bytes as surrogate escapes
        defects.append(f"header {name} contains raw 8-bit bytes")
        value = _decode_8bit(value.encode("ascii", "surrogateescape"), hints, defects, name)
    return _LINEBREAKS.sub("", value).replace("\x00", "")


def _decode_8bit(data: bytes, hints: tuple[str, ...], defects: list[str], name: str) -> str:
    """Decode raw header bytes; see ``header_text``."""
    candidates = [codec for codec in (_codec(hint) for hint in hints) if codec]
    for codec in ["utf-8", *sorted(candidates, key=_single_byte)]:
        try:
            return _no_surrogates(data.decode(codec))
        except Exception:  # UnicodeDecodeError, and odd codecs raising other errors
            continue
    return decode_bytes(data, None, defects, f"8-bit header {name}")


@functools.lru_cache(maxsize=64)
def _single_byte(codec: str) -> bool:
    """True for codecs that decode (nearly) every single high byte, like latin-1."""
    decodable = 0
    for byte in range(128, 256):
        try:
            bytes([byte]).decode(codec)
        except Exception:
            continue
        decodable += 1
    return decodable > 100


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


def decode_bytes(data: bytes, charset: str | None, defects: list[str], where: str) -> str:
    """Decode with the declared charset, else UTF-8, else cp1252 with replacement."""
    label = (charset or "").strip().strip("\"'").lower()
    codec = _codec(label) if label else None
    if label and codec is None:
        defects.append(f"{where}: unknown charset {label[:40]!r}")
    for name in (codec, "utf-8"):
        if name is None:
            continue
        try:
            text = data.decode(name)
        except Exception:  # UnicodeDecodeError, and odd codecs raising other errors
            continue
        if name != codec and codec is not None:
            defects.append(f"{where}: not valid {label[:40]!r}, decoded as UTF-8")
        return _no_surrogates(text)
    if codec is not None or label:
        defects.append(f"{where}: decoded as cp1252 with replacement characters")
    return data.decode("cp1252", "replace")


def _no_surrogates(text: str) -> str:
    """Replace lone surrogates (UTF-7 can produce them; databases refuse them) with U+FFFD."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


@functools.lru_cache(maxsize=256)
def _codec(label: str) -> str | None:
    """The Python codec for a MIME charset label, or None when unknown or refused."""
    label = _CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    if info.name in _REFUSED_CODECS or not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


# --- addresses (strict, CVE-2023-27043) ------------------------------------------------------

_GETADDRESSES_STRICT = "strict" in inspect.signature(email.utils.getaddresses).parameters
_ADDR_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|\\.?|[(),<>:;]|[^"\\(),<>:;]+')
_ATOMS = r"[^\s@<>()\[\],;:\"\\\x00-\x1f\x7f]+"
_LOCAL = re.compile(rf'(?:{_ATOMS}|"(?:[^"\\\r\n]|\\.)*")')
_DOMAIN = re.compile(rf"{_ATOMS}")
_MAX_COMMENT_DEPTH = 32
_PLAIN_ADDR = r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,10}"
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
    if _GETADDRESSES_STRICT:
        result = email.utils.getaddresses([item], strict=True)  # type: ignore[call-arg,unused-ignore]
    else:
        result = email.utils.getaddresses([item])
    if len(result) != 1:
        return None
    display, addr = result[0]
    addr = addr.strip()
    local, at, domain = addr.rpartition("@")
    if not (at and _LOCAL.fullmatch(local) and _DOMAIN.fullmatch(domain)):
        return None
    if ".." in domain or domain.startswith(".") or domain == ".":
        return None
    if "<" in item:
        if not re.search(r"<\s*" + re.escape(addr) + r"\s*>", item):
            return None
    elif _SPACES.sub("", mimelimits.strip_comments(item)) != addr:
        return None
    return display, addr.removesuffix(".").lower()  # "a@example.com." is the same domain


# --- body text, HTML and attachments ---------------------------------------------------------

_RAW_POLICY = email.policy.default.clone(refold_source="none")
_MAX_HTML_FOR_TEXT = 512_000
_KNOWN_CTE = frozenset(
    {"", "7bit", "8bit", "binary", "base64", "quoted-printable"}
    | {"x-uuencode", "uuencode", "uue", "x-uue"}
)
_BAD_QP = re.compile(r"=(?![0-9A-Fa-f]{2}|[ \t]*(?:\r\n|\r|\n|$))")
_NEWLINES = re.compile(r"\r\n?")
_MIME_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,100}/[a-z0-9!#$&^_.+-]{1,150}")
_CID_DROP = re.compile(r"[<>\s\x00-\x1f\x7f]")


@dataclass
class _Body:
    """Text, HTML and attachments found in a message."""

    text: str = ""
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)


@dataclass(frozen=True)
class _PartInfo:
    """The MIME facts about one part, each structural header parsed once."""

    ctype: str
    disposition: str | None
    filename: str | None
    charset: str | None


def _info(part: Message) -> _PartInfo:
    """Read Content-Type and Content-Disposition once (the stdlib parses them on every call)."""
    header: object = part.get("content-type")
    if header is None:
        ctype = part.get_default_type()
    else:
        ctype = str(getattr(header, "content_type", "text/plain")).lower()
        ctype = ctype if ctype.count("/") == 1 else "text/plain"
    params = dict(getattr(header, "params", None) or {})
    disp: object = part.get("content-disposition")
    disp_params = dict(getattr(disp, "params", None) or {})
    disposition = getattr(disp, "content_disposition", None) if disp is not None else None
    filename = disp_params.get("filename") or params.get("name")
    charset = params.get("charset")
    return _PartInfo(
        ctype,
        str(disposition).lower() if disposition else None,
        str(filename).strip() or None if filename else None,
        str(charset) if charset else None,
    )


@dataclass
class _Found:
    """The parts chosen while walking one message level."""

    plain: Message | None = None
    html: Message | None = None
    forwarded: Message | None = None


def collect_body(message: Message, defects: list[str]) -> _Body:
    """Pick the text and HTML bodies and turn every other part into an Attachment."""
    body = _Body()
    found = _walk(message, body.attachments, defects)
    while found.plain is None and found.html is None and found.forwarded is not None:
        found = _walk(found.forwarded, None, defects)  # a forward without a text of its own
    if found.html is not None:
        body.html = _part_text(found.html, _info(found.html), defects)
    if found.plain is not None:
        body.text = _part_text(found.plain, _info(found.plain), defects)
    elif body.html is not None:
        if len(body.html) > _MAX_HTML_FOR_TEXT:
            defects.append(f"HTML body cut to {_MAX_HTML_FOR_TEXT} characters for its text")
        body.text = html_to_text(body.html[:_MAX_HTML_FOR_TEXT])
    return body


def _walk(root: Message, attachments: list[Attachment] | None, defects: list[str]) -> _Found:
    """Walk one message level (not into message/* parts) in document order."""
    found = _Found()
    stack: list[tuple[Message, bool]] = [(root, False)]
    while stack:
        part, in_alternative = stack.pop()
        info = _info(part)
        ctype = info.ctype
        payload = part.get_payload()
        if ctype.startswith("message/"):
            if ctype == "message/rfc822" and found.forwarded is None and payload:
                inner = payload[0] if isinstance(payload, list) else None
                found.forwarded = inner if isinstance(inner, Message) else None
        elif isinstance(payload, list):
            alternative = ctype == "multipart/alternative"
            children = [child for child in payload if isinstance(child, Message)]
            stack.extend((child, alternative) for child in reversed(children))
            continue
        elif _take_body(part, info, part is root, found):
            continue
        elif in_alternative and ctype.startswith("text/") and not info.filename:
            continue  # another representation of the body (text/enriched, ...)
        if attachments is not None:
            _add_attachment(part, info, attachments, defects)
    return found


def _take_body(part: Message, info: _PartInfo, is_root: bool, found: _Found) -> bool:
    """Record ``part`` as the text or HTML body when it is the first one; True if taken."""
    ctype = info.ctype
    if ctype not in ("text/plain", "text/html") or info.disposition == "attachment":
        return False
    if info.filename and not is_root:
        return False
    if ctype == "text/plain" and found.plain is None:
        found.plain = part
        return True
    if ctype == "text/html" and found.html is None:
        found.html = part
        return True
    return False


def _add_attachment(
    part: Message, info: _PartInfo, attachments: list[Attachment], defects: list[str]
) -> None:
    """Append ``part`` as an Attachment; a broken part becomes a defect, never an error."""
    ctype = info.ctype
    try:
        if ctype.startswith("message/"):
            data, name = _message_bytes(part, defects), _forward_name(part, info, defects)
        else:
            data, name = _payload(part, defects), info.filename
        if name and "=?" in name:
            name = decode_words(name, defects)
        cid = _content_id(part, defects)
        inline = cid is not None and info.disposition in (None, "inline")
        safe_type = ctype if _MIME_TYPE.fullmatch(ctype) else "application/octet-stream"
        attachments.append(Attachment(safe_filename(name, safe_type), safe_type, data, inline, cid))
    except (RecursionError, MemoryError):
        raise
    except Exception as exc:
        defects.append(f"attachment ({ctype}) dropped: {type(exc).__name__}")


def _payload(part: Message, defects: list[str]) -> bytes:
    """The decoded payload of a leaf part, noting unknown or broken transfer encodings."""
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte not in _KNOWN_CTE:
        defects.append(f"unknown Content-Transfer-Encoding {cte[:40]!r}; payload kept as is")
    elif cte == "quoted-printable":
        raw = part.get_payload()
        if isinstance(raw, str) and _BAD_QP.search(raw):
            defects.append("invalid quoted-printable sequence")
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _part_text(part: Message, info: _PartInfo, defects: list[str]) -> str:
    """A text part as str: charset fallback chain, NUL removed, "\\n" line endings."""
    text = decode_bytes(_payload(part, defects), info.charset, defects, "text part")
    if "\x00" in text:
        defects.append("NUL characters removed from text")
        text = text.replace("\x00", "")
    return _NEWLINES.sub("\n", text)


def _message_bytes(part: Message, defects: list[str]) -> bytes:
    """The bytes of an attached message/* part (a forwarded mail becomes an .eml file)."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _payload(part, defects)
    chunks: list[bytes] = []
    for inner in payload:
        if not isinstance(inner, Message):
            continue
        try:
            chunks.append(inner.as_bytes(policy=_RAW_POLICY))
        except (RecursionError, MemoryError):
            raise
        except Exception as exc:
            defects.append(f"attached message could not be re-serialised: {type(exc).__name__}")
    return b"\n".join(chunks)


def _forward_name(part: Message, info: _PartInfo, defects: list[str]) -> str | None:
    """The filename of an attached message: its own, else "<subject>.eml"."""
    name = info.filename
    payload = part.get_payload()
    if name or info.ctype != "message/rfc822" or not isinstance(payload, list) or not payload:
        return name
    if not isinstance(payload[0], Message):
        return None
    subjects = _raw_values(payload[0], "subject")
    subject = _one_line(decode_header_value(subjects[0], "subject", defects)) if subjects else ""
    return f"{subject[:150] or 'forwarded message'}.eml"


def _content_id(part: Message, defects: list[str]) -> str | None:
    """The part's Content-ID without angle brackets, or None."""
    values = _raw_values(part, "content-id")
    if not values:
        return None
    cid = _CID_DROP.sub("", decode_header_value(values[0], "content-id", defects))
    return cid[:998] or None
