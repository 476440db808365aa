"""Bounces without an RFC 3464 report: which mail came back, and whom the bounce names.

qmail, Exim without DSN, Lotus Notes, MDaemon and many hosted services return undeliverable
mail as ordinary text: an explanation naming the failed addresses, then a copy of the mail,
its header section inline below the text ("--- Below this line is a copy of the message.")
or attached as a ``message/rfc822`` part. Nothing in them is machine-readable, so this reads
what every such bounce has:

* the returned copy begins where at least ``RETURNED_HEADER_LINES`` header lines follow each
  other (a bounce's own explanation has none), and its ``Message-ID`` names the mail;
* the addresses in the explanation above it are the ones it is about (the returned copy's
  own ``To`` lists every recipient, also those that got the mail);
* a delay warning ("has not yet been delivered", "will continue trying") that says nothing
  permanent is a warning only.

Pure functions on raw bytes, like :mod:`postdesk.daemon.mail.dsn`; the caller believes a
bounce only when the Message-ID is one of its own and only for that mail's recipients.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import Message

from postdesk.daemon.mail.charset import decode_bytes
from postdesk.daemon.mail.htmltext import html_to_text

MAX_NAMED = 100  # addresses taken from one explanation
MAX_READ = 64 * 1024  # characters of each explanation and of each returned copy's start read
MAX_PARTS = 200  # parts of a bounce looked at
RETURNED_HEADER_LINES = 3
_HEADER_LINE = re.compile(r"[!-9;-~]{1,76}:[ \t]")  # a field name, a colon, a space
_MESSAGE_ID = re.compile(r"(?im)^message-id:\s*(<[^<>\s]{1,900}>)")
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")
# Said by delay warnings (Exim's "has not yet been delivered ... Delivery attempts will
# continue", sendmail's "Warning: could not send message for past 4 hours", Postfix's
# "delayed mail") ...
_DELAY = re.compile(
    r"(?i)\b(?:delay(?:ed)?|warning|not yet been delivered|will (?:continue|keep) trying"
    r"|(?:attempts|retries) will continue|will (?:be )?retried|will retry|still trying)\b"
)
# ... and not by them: a warning that also says this makes a bounce.
_PERMANENT = re.compile(
    r"(?i)\b(?:permanent(?:ly)?|gave up|given up|giving up|failed permanently)\b"
    r"|\b5\.\d{1,3}\.\d{1,3}\b"
)


# Subjects of bounces, for those sent from another address than MAILER-DAEMON or postmaster
# (MDaemon, Exchange's and hosted services' own senders), in the languages Exchange writes:
# "Undeliverable:", "Unzustellbar:", "Non remis :", ...
BOUNCE_SUBJECT = re.compile(
    r"(?i)undeliver|undelivered|not delivered|delivery (?:status|fail|failure|notification"
    r"|problem|report)|failure notice|returned mail|mail delivery|could not be delivered"
    r"|returning message|unzustellbar|nicht zustellbar|non remis|no se puede entregar"
    r"|non recapitabil|onbestelbaar|não entregue|nao entregue|kan inte levereras"
    r"|kunne ikke leveres|nie można dostarczyć|nie mozna dostarczyc|nedoručitelné"
    r"|kézbesíthetetlen|teslim edilemedi|недоставляемое|не доставлено|无法投递|配信不能"
)
SYSTEM_SENDERS = frozenset({"mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster"})


@dataclass(frozen=True)
class PlainBounce:
    """What a bounce without a report says: the Message-IDs of the returned copy (the caller
    keeps the one it sent), the addresses its explanation names, and whether it only warns
    of a delay."""

    message_ids: tuple[str, ...]
    named: tuple[str, ...]
    delay_only: bool


def read_plain_bounce(raw: bytes, subject: str) -> PlainBounce | None:
    """The bounce in ``raw`` (whose subject is ``subject``), or None when it returns no mail
    with a Message-ID."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    explanation: list[str] = []
    message_ids: list[str] = []
    for part in _parts(message):
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            message_ids += _returned_ids(part)
            continue
        text = _text(part)
        if text:
            above, returned = split_returned(text[: 2 * MAX_READ])
            explanation.append(above[:MAX_READ])
            message_ids += _MESSAGE_ID.findall(returned[:MAX_READ])
    if not message_ids:
        return None
    said = "\n".join([subject, *explanation])
    # 'gone@cust.test' in quotes: the quote marks may be an address's, but seldom are
    named = list(dict.fromkeys(a.strip("'`.").lower() for a in _ADDRESS.findall(said)))
    delay_only = _DELAY.search(said) is not None and _PERMANENT.search(said) is None
    return PlainBounce(tuple(dict.fromkeys(message_ids)), tuple(named[:MAX_NAMED]), delay_only)


def split_returned(text: str) -> tuple[str, str]:
    """``text`` cut where the returned copy's header section begins: (explanation, copy). The
    copy is "" when no ``RETURNED_HEADER_LINES`` header lines follow each other."""
    lines = text.split("\n")
    run, start = 0, 0  # header lines in a row, and where they began
    for index, line in enumerate(lines):
        if _HEADER_LINE.match(line):
            run, start = run + 1, start if run else index
        elif not (run and line[:1] in (" ", "\t")):  # a folded line goes on with its field
            run = 0
        if run == RETURNED_HEADER_LINES:
            return "\n".join(lines[:start]), "\n".join(lines[start:])
    return text, ""


def _parts(message: Message) -> list[Message]:
    """The leaf parts of ``message``, a returned ``message/rfc822`` as one leaf (its own parts
    are the mail that came back), at most ``MAX_PARTS``."""
    leaves: list[Message] = []
    stack = [message]
    while stack and len(leaves) < MAX_PARTS:
        part = stack.pop()
        if part.is_multipart() and part.get_content_type() != "message/rfc822":
            payload = part.get_payload()
            stack += reversed([sub for sub in payload if isinstance(sub, Message)])
        else:
            leaves.append(part)
    return leaves


def _returned_ids(part: Message) -> list[str]:
    """The Message-ID of a returned ``message/rfc822`` or ``text/rfc822-headers`` part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        inner = payload[0] if payload and isinstance(payload[0], Message) else None
        value = str(inner.get("Message-ID", "")) if inner is not None else ""
        return _MESSAGE_ID.findall(f"Message-ID: {value}")
    body = part.get_payload(decode=True)
    return _MESSAGE_ID.findall(body.decode("utf-8", "replace")) if isinstance(body, bytes) else []


def _text(part: Message) -> str:
    """A text part of the bounce as text ("" for anything else); HTML converted."""
    kind = part.get_content_type()
    if kind not in ("text/plain", "text/html"):
        return ""
    body = part.get_payload(decode=True)
    if not isinstance(body, bytes):
        return ""
    charset = part.get_content_charset()
    text = decode_bytes(body, charset, [], "bounce").replace("\r\n", "\n")
    return html_to_text(text) if kind == "text/html" else text
