"""Step: turn the raw bytes into a ParsedMessage, within the configured hard limits."""

from __future__ import annotations

from postdesk.daemon.mail.parse import MessageRejected, ParseLimits, parse_message
from postdesk.daemon.pipeline import Hold, MessageContext


def run(ctx: MessageContext) -> None:
    """Parse the message; hold it when it breaks a limit or names no usable sender."""
    limits = ctx.services.settings.processing
    try:
        ctx.parsed = parse_message(
            ctx.raw,
            ParseLimits(
                max_depth=limits.max_mime_depth,
                max_parts=limits.max_parts,
                max_header_bytes=limits.max_header_bytes,
            ),
        )
    except MessageRejected as exc:
        raise Hold(exc.reason) from None
    if ctx.parsed.from_addr is None:
        raise Hold("no single, unambiguous sender address in From")
    ctx.sender = ctx.parsed.from_addr
