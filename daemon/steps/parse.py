"""Step: turn the raw bytes into a ParsedMessage, within the configured hard limits.

The message is parsed from its spool file, and each attachment is written to the blob store as
soon as it is decoded, so a large message's decoded files are never all in memory (R-36).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from postdesk.daemon.mail.parse import Attachment, MessageRejected, ParseLimits, parse_file
from postdesk.daemon.pipeline import Hold, MessageContext
from postdesk.daemon.store.attachments import blob_path, store_blob
from postdesk.daemon.store.rawfiles import IN_ROW_MAX


class StoredAttachment(Attachment):
    """An attachment already in the blob store: its bytes are read from there when asked for."""

    sha256: str
    size: int
    _data_dir: Path

    def __init__(self, item: Attachment, data_dir: Path) -> None:
        fields = {
            "filename": item.filename,
            "content_type": item.content_type,
            "inline": item.inline,
            "content_id": item.content_id,
            "sha256": store_blob(data_dir, item.data),
            "size": len(item.data),
            "_data_dir": data_dir,
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)  # a frozen dataclass underneath

    @property
    def data(self) -> bytes:
        """The decoded bytes, read from the blob store."""
        return blob_path(self._data_dir, self.sha256).read_bytes()


def run(ctx: MessageContext) -> None:
    """Parse the message; hold it when it breaks a limit or names no usable sender."""
    limits = ctx.services.settings.processing
    data_dir = ctx.services.settings.data_dir
    bounds = ParseLimits(
        max_depth=limits.max_mime_depth,
        max_parts=limits.max_parts,
        max_header_bytes=limits.max_header_bytes,
    )
    try:
        if ctx.spooled.data is not None:  # read whole when it was claimed
            ctx.parsed = parse_file(io.BytesIO(ctx.raw), bounds, keep=_keeper(data_dir))
        else:
            with ctx.spooled.open_raw() as handle:
                source = _source(ctx, handle)
                ctx.parsed = parse_file(source, bounds, keep=_keeper(data_dir))
    except MessageRejected as exc:
        raise Hold(exc.reason) from None
    if ctx.parsed.from_addr is None:
        raise Hold("no single, unambiguous sender address in From")
    ctx.sender = ctx.parsed.from_addr


def _keeper(data_dir: Path) -> Callable[[Attachment], Attachment]:
    """What the parser hands each decoded attachment to: the blob store."""
    return lambda item: StoredAttachment(item, data_dir)


def _source(ctx: MessageContext, handle: BinaryIO) -> BinaryIO:
    """What to parse of a message not read yet: one small enough to keep in its row is read
    whole, once, into ``ctx.raw`` (the dedupe and store steps read it whole anyway); a larger
    one is parsed from ``handle`` in pieces, before its bytes are read whole (R-36)."""
    size = os.fstat(handle.fileno()).st_size - ctx.spooled.offset
    if size > IN_ROW_MAX:
        return handle
    ctx.raw = handle.read(size)
    return io.BytesIO(ctx.raw)
