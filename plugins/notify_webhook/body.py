"""What a webhook POST carries: the JSON event document or a Slack message, and its signature."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from postdesk.plugins.snapshots import json_default

SIGNATURE_HEADER = "X-Postdesk-Signature"


def render_body(
    style: str,
    event: str,
    ticket: Mapping[str, Any] | None,
    detail: Mapping[str, Any],
    at: datetime,
    event_id: str,
) -> str:
    """The body to send for ``event``: postdesk's JSON document, or Slack's ``{"text"}``.

    The document's ``id`` is the event's ``event_id``: a receiver that sees one twice (the
    event was re-run after a crash) can ignore the second.
    """
    if style == "slack":
        return json.dumps({"text": slack_text(event, ticket, detail)}, ensure_ascii=False)
    document = {
        "id": event_id,
        "event": event,
        "at": at.isoformat(),
        "ticket": ticket,
        "detail": detail,
    }
    return json.dumps(document, ensure_ascii=False, default=json_default)


def slack_text(event: str, ticket: Mapping[str, Any] | None, detail: Mapping[str, Any]) -> str:
    """One short line for a chat channel."""
    parts = [f"*{event}*"]
    if ticket is not None:
        parts.append(f"{ticket.get('tag', '')} {ticket.get('subject', '')}".strip())
        parts.append(
            f"({ticket.get('status')}, {ticket.get('priority')}, {ticket.get('requester')})"
        )
    for key in ("assignee", "reason", "from", "recipient", "mailbox"):
        if detail.get(key):
            parts.append(f"{key}: {detail[key]}")
    return " ".join(parts)


def signature(secret: bytes, body: bytes) -> str:
    """The value of the signature header: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
