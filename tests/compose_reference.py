"""The composer postdesk used before the fast one: the stdlib EmailMessage API, as a reference.

Kept only for ``tests/test_compose_equivalence.py``, which checks that the product composer
(:mod:`postdesk.daemon.outbound.compose`) builds mail that parses back to the same headers and
parts as this one did. It is the code as it was, unchanged except for this docstring.

Every header value is cleaned by one sanitiser (``one_line``) before it is set, so CR, LF, NUL and U+2028/U+2029 from inbound mail cannot inject headers
(R-32, R-60). The serialised result is checked once more: exactly the headers we set, no bare
CR or LF in the header section.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from postdesk.daemon.outbound.templating import Rendered, one_line
from postdesk.daemon.services import Services

MAX_REFERENCES = 20
SUBJECT_LIMIT = 250
NAME_LIMIT = 100
ADDRESS_LIMIT = 320
MSGID_LIMIT = 250
FILENAME_LIMIT = 150
AUTO_SUBMITTED = "auto-replied"

_MSGID = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")
_MIME_TOKEN = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*$")
_HEADER_NAME = re.compile(rb"^([!-9;-~]+):")
_POLICY = (
    policy.SMTP.clone(verify_generated_headers=True)
    if hasattr(policy.SMTP, "verify_generated_headers")
    else policy.SMTP
)


def compose(
    services: Services,
    *,
    to: Sequence[str],
    cc: Sequence[str] = (),
    subject: str,
    rendered: Rendered,
    message_id: str,
    in_reply_to: str | None,
    references: Sequence[str],
    auto: bool,
    from_name: str | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
) -> bytes:
    """The bytes of one outgoing mail from the helpdesk address, ready for SMTP.

    ``attachments`` are ``(filename, content_type, data)``. Raises ValueError for a recipient
    or Message-ID that is not a valid address or msg-id even after cleaning.
    """
    helpdesk = services.settings.helpdesk
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = Address(
        one_line(from_name or helpdesk.name, NAME_LIMIT), addr_spec=helpdesk.address
    )
    msg["To"] = [mailbox(a) for a in to]
    if cc:
        msg["Cc"] = [mailbox(a) for a in cc]
    msg["Reply-To"] = Address(addr_spec=helpdesk.address)
    msg["Subject"] = one_line(subject, SUBJECT_LIMIT)
    msg["Date"] = format_datetime(services.clock())
    own_id = clean_msgid(message_id)
    if own_id is None:
        raise ValueError(f"not a valid Message-ID: {message_id!r}")
    msg["Message-ID"] = own_id
    parent = clean_msgid(in_reply_to) if in_reply_to else None
    if parent:
        msg["In-Reply-To"] = parent
    thread = _references(references, parent)
    if thread:
        msg["References"] = " ".join(thread)
    if auto:
        msg["Auto-Submitted"] = AUTO_SUBMITTED
        msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Loop"] = helpdesk.address
    _set_body(msg, rendered, attachments)
    return serialise(msg)


def mailbox(value: str) -> Address:
    """One recipient (``addr`` or ``Name <addr>``) as a cleaned Address; ValueError if invalid."""
    name, addr = parseaddr(one_line(value, ADDRESS_LIMIT + NAME_LIMIT))
    if "@" not in addr or len(addr) > ADDRESS_LIMIT:
        raise ValueError(f"not an email address: {value!r}")
    return Address(display_name=one_line(name, NAME_LIMIT), addr_spec=addr)


def envelope_address(value: str) -> str:
    """The bare, lower-cased address of a recipient, as used in the SMTP envelope."""
    return mailbox(value).addr_spec.lower()


def clean_msgid(value: str | None) -> str | None:
    """A Message-ID with whitespace and control characters removed, or None if it is no msg-id."""
    if not value:
        return None
    compact = "".join(one_line(value, MSGID_LIMIT * 4).split())
    if not compact.startswith("<"):
        compact = f"<{compact}>"
    if len(compact) > MSGID_LIMIT or not _MSGID.match(compact):
        return None
    return compact


def _references(references: Iterable[str], parent: str | None) -> list[str]:
    """The cleaned, de-duplicated thread, ending with the parent, capped at the last 20."""
    thread: list[str] = []
    for ref in references:
        cleaned = clean_msgid(ref)
        if cleaned and cleaned not in thread:
            thread.append(cleaned)
    if parent:
        if parent in thread:
            thread.remove(parent)
        thread.append(parent)
    return thread[-MAX_REFERENCES:]


def _set_body(
    msg: EmailMessage, rendered: Rendered, attachments: Sequence[tuple[str, str, bytes]]
) -> None:
    """text/plain, an optional text/html alternative, then any attachments."""
    msg.set_content(rendered.text.replace("\x00", ""))
    if rendered.html is not None:
        msg.add_alternative(rendered.html.replace("\x00", ""), subtype="html")
    for filename, content_type, data in attachments:
        maintype, _, subtype = content_type.strip().lower().partition("/")
        valid = _MIME_TOKEN.match(maintype) and _MIME_TOKEN.match(subtype)
        if not valid or maintype in ("multipart", "message"):
            maintype, subtype = "application", "octet-stream"
        name = one_line(filename, FILENAME_LIMIT).replace("/", "_").replace("\\", "_")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name or "attachment")


def serialise(msg: EmailMessage) -> bytes:
    """``msg`` as CRLF bytes, refusing output whose header section differs from what was set."""
    raw = msg.as_bytes(policy=_POLICY)
    head = raw.split(b"\r\n\r\n", 1)[0]
    expected = [name.lower() for name in msg]
    seen: list[str] = []
    for line in head.split(b"\r\n"):
        if b"\r" in line or b"\n" in line or b"\x00" in line:
            raise ValueError("generated header section contains a bare CR, LF or NUL")
        if line[:1] in (b" ", b"\t"):
            continue
        match = _HEADER_NAME.match(line)
        if match is None:
            raise ValueError(f"generated header line is malformed: {line[:80]!r}")
        seen.append(match.group(1).decode("ascii").lower())
    if sorted(seen) != sorted(expected):
        raise ValueError(
            f"generated headers {sorted(seen)} differ from those set {sorted(expected)}"
        )
    return raw
