"""The body of a message: its text and HTML, and every other part as an attachment.

One level of the MIME tree is walked in document order (never into attached messages): the
inline text/plain and text/html parts are the body, other leaf parts and attached messages (as
.eml files) become attachments. The text is the body's pieces in order: of a
multipart/alternative, its plain text (its HTML when the plain part is missing or blank), and
every inline text part beside it in a multipart/mixed (the text an Apple Mail user wrote below
an inline picture, an HTML signature part, a list footer). The first HTML part is the HTML body.
A forward without a text of its own lends the forwarded message's; HTML becomes text through
``htmltext``. A broken part is a defect, never an error.
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import Generic, TypeAlias, TypeVar

from postdesk.daemon.mail.charset import decode_bytes
from postdesk.daemon.mail.filenames import safe_filename
from postdesk.daemon.mail.headers import decode_header_value, decode_words, one_line, raw_values
from postdesk.daemon.mail.htmltext import html_to_text

__all__ = ["AttachmentMaker", "Body", "PartInfo", "collect_body", "part_info"]

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

_A = TypeVar("_A")

# Builds one attachment from (filename, content type, data, inline, content id); mailparse
# passes its ``Attachment`` class, so this module need not import it.
AttachmentMaker: TypeAlias = Callable[[str, str, bytes, bool, str | None], _A]


@dataclass
class Body(Generic[_A]):
    """Text, HTML and attachments found in a message."""

    text: str = ""
    html: str | None = None
    attachments: list[_A] = field(default_factory=list)
    content_type: str = "text/plain"  # the message's own (top-level) content type


@dataclass(frozen=True)
class PartInfo:
    """The MIME facts about one part, each structural header parsed once."""

    ctype: str
    disposition: str | None
    filename: str | None
    charset: str | None


def part_info(part: Message) -> PartInfo:
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
    return PartInfo(
        ctype,
        str(disposition).lower() if disposition else None,
        str(filename).strip() or None if filename else None,
        str(charset) if charset else None,
    )


@dataclass
class _Found:
    """The parts chosen while walking one message level."""

    plain: tuple[Message, PartInfo] | None = None
    html: tuple[Message, PartInfo] | None = None
    # every body part in document order, with the multipart/alternative it belongs to (an id)
    pieces: list[tuple[Message, PartInfo, int | None]] = field(default_factory=list)
    forwarded: Message | None = None
    root_type: str = "text/plain"  # the walked message's own content type


def collect_body(
    message: Message, defects: list[str], make_attachment: AttachmentMaker[_A]
) -> Body[_A]:
    """Pick the text and HTML bodies and turn every other part into an attachment.

    Each attachment is built by ``make_attachment`` (see ``AttachmentMaker``). The encoded
    payload of each attachment part is dropped from ``message`` once decoded, so a large
    message is not held twice.
    """
    body: Body[_A] = Body()
    found = _walk(message, body.attachments, make_attachment, defects)
    body.content_type = found.root_type
    while found.plain is None and found.html is None and found.forwarded is not None:
        # a forward without a text of its own
        found = _walk(found.forwarded, None, make_attachment, defects)
    decoded: dict[int, str] = {}  # each part's text, decoded once
    if found.html is not None:
        body.html = decoded[id(found.html[0])] = _part_text(*found.html, defects)
    body.text = _body_text(found.pieces, decoded, defects)
    return body


def _body_text(
    pieces: list[tuple[Message, PartInfo, int | None]], decoded: dict[int, str], defects: list[str]
) -> str:
    """The text of the body's pieces in order (see the module docstring); an empty plain part
    (a blank alternative, or the stdlib's part after a last boundary without its closing "--")
    does not hide the HTML beside it."""
    chunks: list[str] = []
    groups_done: set[int] = set()
    for part, info, group in pieces:
        if group is None:
            chunk = _piece_text(part, info, decoded, defects)
        elif group in groups_done:
            continue
        else:
            groups_done.add(group)
            members = [(p, i) for p, i, g in pieces if g == group]
            plain = next(((p, i) for p, i in members if i.ctype == "text/plain"), None)
            chunk = _piece_text(*plain, decoded, defects) if plain else ""
            if not chunk.strip():  # no plain text: the alternative's HTML, all of it
                chunk = "\n\n".join(
                    _piece_text(p, i, decoded, defects)
                    for p, i in members
                    if i.ctype != "text/plain"
                )
        if chunk.strip():
            chunks.append(chunk)
    if len(chunks) == 1:
        return chunks[0]
    return "\n\n".join(chunk.strip("\n") for chunk in chunks) + "\n" if chunks else ""


def _piece_text(part: Message, info: PartInfo, decoded: dict[int, str], defects: list[str]) -> str:
    """One body part as text: a plain part as it is, an HTML part converted."""
    text = decoded.get(id(part))
    if text is None:
        text = decoded[id(part)] = _part_text(part, info, defects)
    if info.ctype != "text/html":
        return text
    if len(text) > _MAX_HTML_FOR_TEXT:
        defects.append(f"HTML body cut to {_MAX_HTML_FOR_TEXT} characters for its text")
    return html_to_text(text[:_MAX_HTML_FOR_TEXT])


def _walk(
    root: Message,
    attachments: list[_A] | None,
    make_attachment: AttachmentMaker[_A],
    defects: list[str],
) -> _Found:
    """Walk one message level (not into message/* parts) in document order."""
    found = _Found()
    # (part, a child of a multipart/alternative, the alternative it is inside of, if any)
    stack: list[tuple[Message, bool, int | None]] = [(root, False, None)]
    while stack:
        part, in_alternative, group = stack.pop()
        info = part_info(part)
        ctype = info.ctype
        if part is root:
            found.root_type = ctype
        payload = part.get_payload()
        if ctype.startswith("message/"):
            if ctype == "message/rfc822" and found.forwarded is None and payload:
                inner = payload[0] if isinstance(payload, list) else None
                found.forwarded = inner if isinstance(inner, Message) else None
        elif isinstance(payload, list):
            alternative = ctype == "multipart/alternative"
            inside = id(part) if alternative and group is None else group
            children = [child for child in payload if isinstance(child, Message)]
            stack.extend((child, alternative, inside) for child in reversed(children))
            continue
        elif _take_body(part, info, part is root, found, group):
            continue
        elif in_alternative and ctype.startswith("text/") and not info.filename:
            continue  # another representation of the body (text/enriched, ...)
        if attachments is not None:
            _add_attachment(part, info, attachments, make_attachment, defects)
    return found


def _take_body(
    part: Message, info: PartInfo, is_root: bool, found: _Found, group: int | None
) -> bool:
    """Record ``part`` as a piece of the body (and as the text or HTML body when it is the
    first one) when it is an inline text or HTML part; True if taken."""
    ctype = info.ctype
    if ctype not in ("text/plain", "text/html") or info.disposition == "attachment":
        return False
    if info.filename and not is_root:
        return False
    found.pieces.append((part, info, group))
    if ctype == "text/plain" and found.plain is None:
        found.plain = part, info
    elif ctype == "text/html" and found.html is None:
        found.html = part, info
    return True


def _add_attachment(
    part: Message,
    info: PartInfo,
    attachments: list[_A],
    make_attachment: AttachmentMaker[_A],
    defects: list[str],
) -> None:
    """Append ``part`` as an attachment; a broken part becomes a defect, never an error."""
    ctype = info.ctype
    try:
        if ctype.startswith("message/"):
            data, name = _message_bytes(part, defects), _forward_name(part, info, defects)
        else:
            data, name = _payload(part, defects), info.filename
            part.set_payload("")  # the encoded copy is not needed again: free it now
        if name and "=?" in name:
            name = decode_words(name, defects)
        cid = _content_id(part, defects)
        inline = cid is not None and info.disposition in (None, "inline")
        safe_type = ctype if _MIME_TYPE.fullmatch(ctype) else "application/octet-stream"
        filename = safe_filename(name, safe_type)
        attachments.append(make_attachment(filename, safe_type, data, inline, cid))
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


def _part_text(part: Message, info: PartInfo, defects: list[str]) -> str:
    """A text part as str: charset fallback chain, NUL removed, "\\n" line endings."""
    text = decode_bytes(_payload(part, defects), info.charset, defects, "text part")
    if "\x00" in text:
        defects.append("NUL characters removed from text")
        text = text.replace("\x00", "")
    return _NEWLINES.sub("\n", text) if "\r" in text else text


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


def _forward_name(part: Message, info: PartInfo, defects: list[str]) -> str | None:
    """The filename of an attached message: its own, else "<subject>.eml"."""
    name = info.filename
    payload = part.get_payload()
    if name or info.ctype != "message/rfc822" or not isinstance(payload, list) or not payload:
        return name
    if not isinstance(payload[0], Message):
        return None
    subjects = raw_values(payload[0], "subject")
    subject = one_line(decode_header_value(subjects[0], "subject", defects)) if subjects else ""
    return f"{subject[:150] or 'forwarded message'}.eml"


def _content_id(part: Message, defects: list[str]) -> str | None:
    """The part's Content-ID without angle brackets, or None."""
    values = raw_values(part, "content-id")
    if not values:
        return None
    cid = _CID_DROP.sub("", decode_header_value(values[0], "content-id", defects))
    return cid[:998] or None
