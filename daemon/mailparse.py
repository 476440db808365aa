"""Parse raw mail into a ParsedMessage with the stdlib email package, within hard limits.

Hostile mail must not stall or crash the worker: structure limits are checked on the raw bytes
before the stdlib parser runs, oversized headers are cut first, and every stdlib error becomes
either a recorded defect or ``MessageRejected``.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

from postdesk.daemon.htmltext import html_to_text
from postdesk.daemon.mimelimits import ParseLimits, check_limits, truncate_headers
from postdesk.daemon.replytext import extract_new_text
from postdesk.daemon.filenames import safe_filename

MESSAGE_ID = re.compile(r"<[^<>\s]{1,900}>")
UNSAFE_HEADER_CHARS = re.compile(r"[\r\n\x00\u2028\u2029]+")
MAX_REFERENCES = 100

__all__ = ["Attachment", "MessageRejected", "ParseLimits", "ParsedMessage", "parse_message"]


class MessageRejected(Exception):
    """The message breaks a hard limit or cannot be parsed at all; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Attachment:
    """A file carried by a message."""

    filename: str
    content_type: str
    data: bytes
    inline: bool
    content_id: str | None


@dataclass(frozen=True)
class ParsedMessage:
    """What the pipeline needs from one message, decoded and normalised."""

    message_id: str
    message_id_generated: bool
    from_addr: str | None
    from_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    subject: str
    date: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str
    new_text: str
    html: str | None
    attachments: tuple[Attachment, ...]
    headers: dict[str, tuple[str, ...]] = field(repr=False)
    defects: tuple[str, ...]
    content_type: str
    report_type: str | None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def header_all(self, name: str) -> tuple[str, ...]:
        """Every value of header ``name`` (any case)."""
        return self.headers.get(name.lower(), ())


def parse_message(raw: bytes, limits: ParseLimits = ParseLimits()) -> ParsedMessage:
    """Parse raw RFC 5322 bytes; raises nothing but MessageRejected."""
    if raw.startswith(b"From "):
        raw = raw.partition(b"\n")[2]  # an mbox separator line
    defects: list[str] = []
    problem = check_limits(raw, limits)
    if problem:
        raise MessageRejected(problem)
    raw_for_parser = truncate_headers(raw, limits, defects)
    try:
        message = BytesParser(policy=email.policy.default).parsebytes(raw_for_parser)
        assert isinstance(message, EmailMessage)
        return _extract(message, raw, limits, defects)
    except MessageRejected:
        raise
    except RecursionError:
        raise MessageRejected("message structure too deeply nested to parse") from None
    except Exception as error:
        raise MessageRejected(
            f"unparseable message: {type(error).__name__}: {error}"[:300]
        ) from None


def _extract(
    message: EmailMessage, raw: bytes, limits: ParseLimits, defects: list[str]
) -> ParsedMessage:
    headers = _headers(message, defects)
    message_id = _first_id(headers.get("message-id", ()))
    generated = message_id is None
    if message_id is None:
        message_id = f"<{hashlib.sha256(raw).hexdigest()[:32]}@generated.postdesk>"
    from_addr, from_name = _sender(message)
    text, html, attachments = _walk(message, defects)
    content_type = message.get_content_type()
    return ParsedMessage(
        message_id=message_id,
        message_id_generated=generated,
        from_addr=from_addr,
        from_name=from_name,
        to=_addresses(message, "to", limits, defects),
        cc=_addresses(message, "cc", limits, defects),
        reply_to=_addresses(message, "reply-to", limits, defects),
        subject=clean_header(" ".join(headers.get("subject", ()))[:998]),
        date=_date(headers.get("date", ())),
        in_reply_to=tuple(MESSAGE_ID.findall(" ".join(headers.get("in-reply-to", ()))))[:10],
        references=tuple(MESSAGE_ID.findall(" ".join(headers.get("references", ()))))[
            -MAX_REFERENCES:
        ],
        text=text,
        new_text=extract_new_text(text),
        html=html,
        attachments=tuple(attachments),
        headers=headers,
        defects=tuple(defects + [str(d) for d in message.defects][:20]),
        content_type=content_type,
        report_type=message.get_param("report-type")
        if content_type == "multipart/report"
        else None,  # type: ignore[arg-type]
    )


def clean_header(value: str) -> str:
    """One line: CR, LF, NUL and line separators removed, whitespace collapsed."""
    return " ".join(UNSAFE_HEADER_CHARS.sub(" ", value).split())


def _headers(message: EmailMessage, defects: list[str]) -> dict[str, tuple[str, ...]]:
    headers: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        try:
            decoded = str(message.policy.header_factory(name, value))
        except Exception as error:  # stdlib header classes raise on hostile input
            defects.append(f"header {name} kept undecoded: {type(error).__name__}")
            decoded = str(value)
        headers.setdefault(name.lower(), []).append(decoded)
    return {name: tuple(values) for name, values in headers.items()}


def _first_id(values: tuple[str, ...]) -> str | None:
    for value in values:
        found = MESSAGE_ID.search(value)
        if found:
            return found.group(0)
    return None


def _sender(message: EmailMessage) -> tuple[str | None, str]:
    """The single From address (lower case) and name; None when absent or ambiguous."""
    found = _header_addresses(message, "from")
    if found is None or len(found) != 1:
        return None, ""
    name, address = found[0]
    return address, clean_header(name)


def _header_addresses(message: EmailMessage, name: str) -> list[tuple[str, str]] | None:
    """(display name, address) pairs of every ``name`` header; None when any is malformed."""
    pairs: list[tuple[str, str]] = []
    try:
        for header in message.get_all(name, []):
            if getattr(header, "defects", None):
                return None
            for address in getattr(header, "addresses", ()):
                if not _plausible(address.addr_spec):
                    return None
                pairs.append((address.display_name, address.addr_spec.lower()))
    except Exception:  # hostile address syntax can break the header parser
        return None
    return pairs


def _plausible(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain and "@" not in local and " " not in address)


def _addresses(message: EmailMessage, name: str, limits: ParseLimits, defects: list[str]) -> tuple[str, ...]:
    pairs = _header_addresses(message, name)
    if pairs is None:
        defects.append(f"malformed {name} header ignored")
        return ()
    if len(pairs) > limits.max_addresses:
        defects.append(f"{len(pairs)} {name} addresses cut to {limits.max_addresses}")
    return tuple(dict.fromkeys(address for _name, address in pairs[: limits.max_addresses]))


def _date(values: tuple[str, ...]) -> datetime | None:
    try:
        moment = parsedate_to_datetime(values[0]) if values else None
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment is None or moment.tzinfo else None


def _walk(message: EmailMessage, defects: list[str]) -> tuple[str, str | None, list[Attachment]]:
    """The first text/plain body, the first HTML body, and every other part as an attachment."""
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        disposition = part.get_content_disposition()
        if disposition != "attachment" and content_type == "text/plain" and text is None:
            text = decode_text(part, defects)
        elif disposition != "attachment" and content_type == "text/html" and html is None:
            html = decode_text(part, defects)
        else:
            attachments.append(_attachment(part, content_type, disposition, defects))
    if text is None:
        text = html_to_text(html) if html else ""
    return text.replace("\r\n", "\n").replace("\x00", ""), html, attachments


def _attachment(
    part: EmailMessage, content_type: str, disposition: str | None, defects: list[str]
) -> Attachment:
    try:
        data = part.get_payload(decode=True)
    except Exception as error:
        defects.append(f"attachment not decodable: {type(error).__name__}")
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        data = (
            payload.as_bytes()
            if isinstance(payload, EmailMessage)
            else str(payload).encode("utf-8", "replace")
        )
    content_id = part.get("content-id")
    return Attachment(
        filename=safe_filename(_filename(part), content_type),
        content_type=content_type,
        data=data,
        inline=disposition == "inline" and content_id is not None,
        content_id=clean_header(str(content_id)) if content_id else None,
    )


def _filename(part: EmailMessage) -> str | None:
    try:
        return part.get_filename()
    except Exception:
        return None


def decode_text(part: EmailMessage, defects: list[str]) -> str:
    """A text part as str: declared charset, then UTF-8, then cp1252 with replacement."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if not isinstance(payload, bytes):
        defects.append("text part without a decodable payload")
        return ""
    declared = part.get_content_charset() or "utf-8"
    for charset in (declared, "utf-8"):
        try:
            return payload.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    defects.append(f"text not valid {declared}: decoded as cp1252")
    return payload.decode("cp1252", errors="replace")
