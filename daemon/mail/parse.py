"""Parse raw mail into a ParsedMessage with the stdlib ``email`` package, within hard limits.

Hostile mail must not stall or crash the worker (RELIABILITY §G): ``limits.check`` enforces
the structure limits on the raw bytes and cuts oversized headers *before* the stdlib parser
runs; header values are then read raw and decoded (8-bit bytes, RFC 2047 words) instead of
through the stdlib's slow structured-header classes, and addresses are parsed strictly
(``headers``); text parts are decoded with a charset fallback chain (``body``,
``charset``). This module assembles the result. Every problem becomes a line in
``defects``, or, when nothing sensible can be produced, ``MessageRejected``.
"""

from __future__ import annotations

import email.policy
import functools
import hashlib
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import Message
from email.parser import BytesFeedParser, BytesHeaderParser
from email.utils import parsedate_to_datetime
from typing import BinaryIO, cast

from postdesk.daemon.mail import limits as structure
from postdesk.daemon.mail.body import collect_body, part_info
from postdesk.daemon.mail.charset import no_surrogates
from postdesk.daemon.mail.headers import (
    decode_header_value,
    decode_words,
    header_text,
    one_line,
    parse_addresses,
    raw_values,
)
from postdesk.daemon.mail.reply import extract_new_text

__all__ = [
    "Attachment",
    "MessageRejected",
    "ParseLimits",
    "ParsedMessage",
    "parse_file",
    "parse_message",
    "sender_and_subject",
]

_HEADER_PARSER = BytesHeaderParser(policy=email.policy.compat32)
_MAX_LISTING_HEAD = 65_536
_FEED_CHUNK = 65_536  # bytes handed to the stdlib parser at a time
_MESSAGE_ID = re.compile(r"<[^<>\s\x00-\x1f\x7f]{1,996}>")
_BARE_ID = re.compile(r"[^<>\s\"(),;:\\]{1,996}@[^<>\s\"(),;:\\]{1,996}")
_RECIPIENTS = ("to", "cc", "reply-to")
_ADDRESS_HEADERS = frozenset(("from", *_RECIPIENTS))
_SHARED_HEADER_MAX = 512  # longer header values are parsed each time, never kept
_LINE_BREAK = re.compile(r"\n|\r")  # what the stdlib drops from a header value before parsing
_MAX_SUBJECT = 998
_MAX_REFERENCES = 100
_MAX_STDLIB_DEFECTS = 20
_NESTED_TYPES = ("multipart", "message")  # types whose body the parser must walk


class _ReusingPolicy(email.policy.EmailPolicy):
    """``email.policy.default`` that builds each distinct header object once.

    The stdlib re-parses a structured header on every ``get`` (the feed parser alone asks each
    part for its Content-Type several times); header objects are immutable, so equal raw
    values can share one. Only short values are kept (``_SHARED_HEADER_MAX``): hostile mail full
    of long, distinct headers must not fill the worker's memory with their parse trees.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        """The header object for ``name: value``, shared by equal short raw values."""
        if hasattr(value, "name"):
            return value
        unfolded = "".join(_LINE_BREAK.split(value)) if _LINE_BREAK.search(value) else value
        if len(unfolded) > _SHARED_HEADER_MAX:
            return self.header_factory(name, unfolded)  # type: ignore[no-any-return]
        return _header_object(self.header_factory, name, unfolded)


@functools.lru_cache(maxsize=1024)
def _header_object(factory: HeaderRegistry, name: str, value: str) -> BaseHeader:
    """One parsed header object per (name, unfolded value)."""
    return factory(name, value)


_POLICY = _ReusingPolicy()
_NEW_PART = cast(Callable[..., Message], _POLICY.message_factory)  # as the feed parser makes one


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
    text: str  # the body's text parts in order, an HTML one converted (daemon/mail/body.py)
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
    return _rejecting(lambda: _parse(bytes(raw), limits))


def parse_file(
    handle: BinaryIO,
    limits: ParseLimits = ParseLimits(),
    keep: Callable[[Attachment], Attachment] | None = None,
) -> ParsedMessage:
    """Parse the message in ``handle`` (from its position to the end) like ``parse_message``.

    For large mail (R-36): the bytes are read whole only for the limits pre-scan and let go
    before the parse tree is built from the file in pieces; ``keep`` receives each attachment as
    soon as it is decoded and returns what the result holds instead (e.g. a stored copy).
    """
    return _rejecting(lambda: _parse_file(handle, limits, keep))


def _rejecting(parse: Callable[[], ParsedMessage]) -> ParsedMessage:
    """Run ``parse``, turning every failure into MessageRejected."""
    try:
        return parse()
    except MessageRejected:
        raise
    except structure.LimitExceeded as exc:
        raise MessageRejected(exc.reason) from None
    except RecursionError:
        raise MessageRejected("message structure too deeply nested for the parser") from None
    except Exception as exc:  # any other stdlib failure: quarantine rather than crash
        raise MessageRejected(f"message cannot be parsed ({type(exc).__name__})") from None


def _parse(raw: bytes, limits: ParseLimits) -> ParsedMessage:
    """The parse proper; may raise anything (``parse_message`` translates)."""
    prescan = structure.check(_strip_mbox_from(raw), limits)
    message = _from_head(prescan.raw, prescan.head) or _feed(prescan.raw)
    return _assemble(
        message, list(prescan.defects), limits, lambda: hashlib.sha256(raw).hexdigest(), Attachment
    )


def _parse_file(
    handle: BinaryIO, limits: ParseLimits, keep: Callable[[Attachment], Attachment] | None
) -> ParsedMessage:
    """``_parse`` for a file: the tree is fed from the file unless the pre-scan rewrote it."""
    start = handle.tell()
    stripped = _strip_mbox_from(handle.read())
    prescan = structure.check(stripped, limits)
    defects = list(prescan.defects)
    rewritten = prescan.raw if prescan.raw is not stripped else None
    message = _from_head(stripped, prescan.head)
    del stripped, prescan  # not held while the tree is built
    if message is None:
        if rewritten is None:
            handle.seek(start)
            message = _feed_file(handle)
        else:
            message = _feed(rewritten)
            del rewritten

    def digest() -> str:
        handle.seek(start)
        found = hashlib.sha256()
        while chunk := handle.read(_FEED_CHUNK):
            found.update(chunk)
        return found.hexdigest()

    def make(name: str, ctype: str, data: bytes, inline: bool, cid: str | None) -> Attachment:
        item = Attachment(name, ctype, data, inline, cid)
        return item if keep is None else keep(item)

    return _assemble(message, defects, limits, digest, make)


def _assemble(
    message: Message,
    defects: list[str],
    limits: ParseLimits,
    raw_digest: Callable[[], str],
    make_attachment: Callable[[str, str, bytes, bool, str | None], Attachment],
) -> ParsedMessage:
    """The ParsedMessage of a parsed tree (``raw_digest`` names mail without a Message-ID)."""
    hint = _charset_hint(message)
    headers, texts = _headers(message, limits, hint, defects)
    from_addr, from_name = _sender(texts.get("from", []), limits, defects)
    message_id, generated = _message_id(headers, raw_digest, defects)
    to, cc, reply_to = (
        _recipients(texts.get(name, []), name, limits, defects) for name in _RECIPIENTS
    )
    date = _date(headers, defects)
    body = collect_body(message, defects, make_attachment)
    content_type = body.content_type
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


def _from_head(raw: bytes, head: structure.Head | None) -> Message | None:
    """The stdlib parser's tree of ``raw`` made from the pre-scan's ``head`` (its plain top
    header block) without the parser, when ``raw`` is within one feed chunk and its type is
    neither multipart nor message/*; else None (the parser must walk it).

    What the feed parser does with such a message: one ``header_source_parse`` of each field's
    lines (here the field's text in one piece: the same name and value), set in order, and the
    rest after the blank line as the payload, decoded as it decodes bytes."""
    if head is None or len(raw) > _FEED_CHUNK:
        return None
    message = _NEW_PART(policy=_POLICY)
    parse_field = _POLICY.header_source_parse
    for start, end in head.fields:
        message.set_raw(*parse_field([raw[start:end].decode("ascii", "surrogateescape")]))
    if message.get_content_maintype() in _NESTED_TYPES:
        return None
    message.set_payload(raw[head.body_start :].decode("ascii", "surrogateescape"))
    return message


def _feed(raw: bytes) -> Message:
    """The stdlib parse of ``raw``, fed in chunks: ``BytesParser.parsebytes`` would hold the
    whole message again as text (and ``StringIO`` as 4-byte characters) while it parses."""
    view = memoryview(raw)
    return _parse_chunks(
        bytes(view[start : start + _FEED_CHUNK]) for start in range(0, len(raw), _FEED_CHUNK)
    )


def _feed_file(handle: BinaryIO) -> Message:
    """``_feed`` reading from ``handle`` (the mbox ``From `` line skipped)."""
    head = handle.read(_FEED_CHUNK)
    if head.startswith(b"From "):
        head = _strip_mbox_from(head + handle.readline())
    return _parse_chunks(
        itertools.chain((head,), iter(functools.partial(handle.read, _FEED_CHUNK), b""))
    )


def _parse_chunks(chunks: Iterator[bytes]) -> Message:
    """The stdlib parse of the message in ``chunks``.

    A message whose first chunk holds its header block and whose type is neither multipart nor
    message/* is parsed as its header block alone, and the rest is set as its payload whole:
    exactly what the feedparser makes of such a body (it only joins the body's lines again),
    without splitting it into lines first. Any other message is fed to the parser throughout.
    """
    first = next(chunks, b"")
    split = _header_end(first)
    if split:
        message = _parse_bytes((first[:split],))
        if message.get_content_maintype() not in _NESTED_TYPES and message.get_payload() == "":
            rest = itertools.chain((first[split:],), chunks)  # decoded as the parser does:
            message.set_payload("".join(c.decode("ascii", "surrogateescape") for c in rest))
            return message
    return _parse_bytes(itertools.chain((first,), chunks))


def _header_end(head: bytes) -> int:
    """Where the body starts, just after the first blank line in ``head`` (0: none found, or
    the head names a multipart or message/* type, which the parser must see whole)."""
    crlf = head.find(b"\n\r\n")  # first: a scan for LF LF is slow in CRLF text, so it stops here
    lf = head.find(b"\n\n", 0, len(head) if crlf < 0 else crlf + 2)
    if crlf < 0 and lf < 0:
        return 0
    split = lf + 2 if lf >= 0 else crlf + 3
    lowered = head[:split].lower()
    return 0 if b"multipart" in lowered or b"message/" in lowered else split


def _parse_bytes(chunks: Iterable[bytes]) -> Message:
    """The stdlib feedparser's tree of the bytes in ``chunks``."""
    parser = BytesFeedParser(policy=_POLICY)
    for chunk in chunks:
        parser.feed(chunk)
    return parser.close()


def sender_and_subject(raw: bytes) -> tuple[str, str]:
    """The decoded From and Subject of a raw message, for listings (never raises)."""
    try:
        head = _HEADER_PARSER.parsebytes(_strip_mbox_from(raw[:_MAX_LISTING_HEAD]))
        found = []
        for name in ("from", "subject"):
            values = raw_values(head, name)
            text = decode_header_value(values[0], name, []) if values else ""
            found.append(one_line(text)[:200])
        return found[0], found[1]
    except Exception:  # a listing line must not fail on hostile mail
        return "", ""


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
        charset = part_info(part).charset
        if charset:
            found.setdefault(charset.lower(), None)
    return tuple(found)


def _headers(
    message: Message, limits: ParseLimits, hint: tuple[str, ...], defects: list[str]
) -> tuple[dict[str, tuple[str, ...]], dict[str, list[str]]]:
    """Every top-level header, lower-case name -> decoded values; and the address headers'
    values as text before their encoded words are decoded (each header is read once)."""
    collected: dict[str, list[str]] = {}
    texts: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        key = name.strip().lower()
        text = header_text(value, key, defects, hint)
        if key in _ADDRESS_HEADERS:
            texts.setdefault(key, []).append(text)
        decoded = decode_words(text, defects) if "=?" in text else text  # decode_header_value
        collected.setdefault(key, []).append(decoded[: limits.max_header_bytes])
    return {key: tuple(values) for key, values in collected.items()}, texts


def _sender(texts: list[str], limits: ParseLimits, defects: list[str]) -> tuple[str | None, str]:
    """(address, display name) of the single unambiguous From address, else (None, "");
    ``texts``: the From headers' values (``header_text``)."""
    if len(texts) != 1:
        if texts:
            defects.append(f"{len(texts)} From headers: sender is ambiguous")
        return None, ""
    found = parse_addresses(texts[0], "from", limits.max_addresses, defects)
    if len(found) != 1:
        if found:
            defects.append(f"From names {len(found)} addresses: sender is ambiguous")
        return None, ""
    name, addr = found[0]
    return addr, one_line(name)


def _recipients(
    texts: list[str], name: str, limits: ParseLimits, defects: list[str]
) -> tuple[str, ...]:
    """Lower-cased addresses in the values ``texts`` (``header_text``) of every header called
    ``name`` (duplicates removed)."""
    found: dict[str, None] = {}
    for text in texts:
        for _display, addr in parse_addresses(text, name, limits.max_addresses, defects):
            found.setdefault(addr, None)
    return tuple(found)[: limits.max_addresses]


def _message_id(
    headers: dict[str, tuple[str, ...]], raw_digest: Callable[[], str], defects: list[str]
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
    return f"<{raw_digest()[:32]}@generated.postdesk>", True


def _ids(values: tuple[str, ...]) -> tuple[str, ...]:
    """Every "<...>" message id in the given header values, in order."""
    return tuple(match for value in values for match in _MESSAGE_ID.findall(value))


def _subject(headers: dict[str, tuple[str, ...]]) -> str:
    """The decoded first Subject on one line, at most 998 characters."""
    values = headers.get("subject", ())
    return one_line(values[0])[:_MAX_SUBJECT] if values else ""


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
    note = no_surrogates(note)[:300]
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
