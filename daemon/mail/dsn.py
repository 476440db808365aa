"""Delivery status notifications (RFC 3464): who failed for good, and which mail it was about;
message disposition notifications (RFC 8098, read receipts): which mail was displayed.

Pure functions on raw bytes. Only ``message/delivery-status`` and
``message/disposition-notification`` parts are read; the original message is named by an
``Original-Message-ID`` field or by the Message-ID in the returned ``message/rfc822`` /
``text/rfc822-headers`` part.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import Message

MAX_RECIPIENTS = 100
_MSGID = re.compile(r"<[^<>\s]{1,900}>")


@dataclass(frozen=True)
class DeliveryReport:
    """The permanently failed recipients of a DSN and the Message-ID of the mail it reports."""

    failed: tuple[str, ...]
    original_message_id: str | None


def read_report(raw: bytes) -> DeliveryReport | None:
    """The delivery report in ``raw``, or None when it holds no ``message/delivery-status``."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    status_parts = [p for p in message.walk() if p.get_content_type() == "message/delivery-status"]
    if not status_parts:
        return None
    failed: list[str] = []
    original = None
    for part in status_parts:
        for block in _field_blocks(part):
            original = original or _message_id(block.get("original-message-id", ""))
            if _is_permanent_failure(block):
                address = _address(block.get("final-recipient") or block.get("original-recipient"))
                if address and address not in failed and len(failed) < MAX_RECIPIENTS:
                    failed.append(address)
    return DeliveryReport(tuple(failed), original or _returned_message_id(message))


@dataclass(frozen=True)
class ReadReceipt:
    """An MDN: the mail it is about, and whether the disposition says it was displayed."""

    original_message_id: str | None
    displayed: bool


def read_receipt(raw: bytes) -> ReadReceipt | None:
    """The read receipt in ``raw``, or None when it holds no ``message/disposition-notification``."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    parts = [
        p for p in message.walk() if p.get_content_type() == "message/disposition-notification"
    ]
    if not parts:
        return None
    original, displayed = None, False
    for part in parts:
        for block in _field_blocks(part):
            original = original or _message_id(block.get("original-message-id", ""))
            # "manual-action/MDN-sent-manually; displayed" (RFC 8098 section 3.2.6)
            kind = block.get("disposition", "").partition(";")[2].partition("/")[0]
            displayed = displayed or kind.strip().lower() == "displayed"
    return ReadReceipt(original or _returned_message_id(message), displayed)


def _field_blocks(part: Message) -> list[dict[str, str]]:
    """The per-message and per-recipient field groups of a delivery-status part."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the stdlib parses the groups into sub-messages
        text = "\n\n".join(str(sub) for sub in payload)
    else:
        body = part.get_payload(decode=True)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else ""
    blocks = []
    for chunk in re.split(r"\r?\n\s*\r?\n", text):
        fields: dict[str, str] = {}
        for line in re.sub(r"\r?\n[ \t]+", " ", chunk).splitlines():
            name, colon, value = line.partition(":")
            if colon:
                fields.setdefault(name.strip().lower(), value.strip())
        if fields:
            blocks.append(fields)
    return blocks


def _is_permanent_failure(block: dict[str, str]) -> bool:
    action = block.get("action", "").lower()
    status = block.get("status", "").strip()
    return action == "failed" and (status.startswith("5") or not status)


def _address(value: str | None) -> str | None:
    """The address of a ``type; address`` field, lower-cased, or None when not an address."""
    if not value:
        return None
    address = value.partition(";")[2].strip() if ";" in value else value.strip()
    address = address.strip("<>").lower()
    return address if re.fullmatch(r"[^\s@<>]+@[^\s@<>]+", address) else None


def _message_id(value: str) -> str | None:
    found = _MSGID.search(value)
    return found.group(0) if found else None


def _returned_message_id(message: Message) -> str | None:
    """The Message-ID of the returned original (its headers or the whole message)."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                return _message_id(str(inner.get("Message-ID", "")))
        elif kind == "text/rfc822-headers":
            body = part.get_payload(decode=True)
            if not isinstance(body, bytes):
                return None
            headers = email.message_from_bytes(body, policy=email.policy.compat32)
            return _message_id(str(headers.get("Message-ID", "")))
    return None
