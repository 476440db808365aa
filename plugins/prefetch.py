"""Lookups started before a worker asks: the plugins process warms its caches from the spool.

Under load a worker runs seconds behind intake, so the contact and order lookups it asks for
a message (``steps/lookup.py``) would seldom be answered before the message commits, and its
agent notifications would be held and composed a second time once they are
(``daemon/outbound/held.py``). So the plugins process looks at the messages waiting in the
spool (``spool/new``, oldest first, at most ``AHEAD`` of them) every ``POLL_SECONDS``, or less
often when listing them takes long (and not at all while the folder's mtime says that nothing
came or went since it was last listed, nor, while more than ``AHEAD`` wait, before the workers
have claimed about ``REFILL`` of those it found), and for each one it has not seen yet starts the lookups
from a cheap reading of the file: the ``From`` address, the subject and the first
``BODY_BYTES`` of the raw body. That reading fills the caches (the contact by address, the
orders by request), so that the worker's own question, with the text it parsed, is answered
from them at once. For a message that is one plain-text part (US-ASCII or UTF-8; 7bit, 8bit or
quoted-printable) the reading decodes the whole body as the worker's parser does and cuts it
with the same reply extraction: its key is then exactly the worker's question, whose answer is
kept and posted to the listening workers (``PluginRunner._warm``, :mod:`postdesk.plugins.board`),
so the worker asks nothing, or at worst a cache hit, not a second run of the hooks.

A file a worker has claimed meanwhile is simply skipped; reading never writes to the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import os
import quopri
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from postdesk.daemon.mail.charset import decode_bytes
from postdesk.daemon.mail.headers import decode_words, one_line
from postdesk.daemon.mail.reply import extract_new_text
from postdesk.plugins.facts import LookupKey, lookup_text

log = logging.getLogger("postdesk.plugins")

POLL_SECONDS = 0.05  # how often the spool's waiting messages are looked at
# A round's listing and reading are given at least this many times their own duration of rest:
# listing a spool of 20,000 waiting files (and sorting the names) takes ~15 ms, which every
# 50 ms would cost a third of a core just when the machine is busiest.
REST_FACTOR = 9
# A folder whose mtime has not moved since a listing made this long after its last change is
# not listed again (an idle spool costs a stat, not a listing in a thread, every POLL_SECONDS);
# well above the granularity of file timestamps (the kernel's coarse clock, a few ms).
SETTLED_NS = 100_000_000
AHEAD = 256  # the oldest waiting messages prefetched for; later ones wait for their turn
# While more than AHEAD wait, arrivals do not matter (they queue behind the window): the window
# is listed again once the workers have claimed about this many of it, at the rate they claimed
# since the last listing, at most MAX_REST later. A backlog of 10,000 files takes ~5 ms to list
# here; at a worker's 250 a second that is a listing every quarter of a second, not twenty.
REFILL = AHEAD // 4
MAX_REST = 1.0
# Prefetches at once. Each waits for its lookups (a shop's answer: tens of milliseconds), so
# keeping pace with R messages a second takes R times that wait in flight: 64 keep up with
# about 600 a second from a shop answering in 50 ms (16 fell behind a worker at ~300, whose
# notifications were then held and written a second time). ``max_requests`` bounds the shop.
CONCURRENCY = 64
HEAD_BYTES = 64 * 1024  # read of a spool file: envelope line, header and the start of the body
BODY_BYTES = 16 * 1024  # of the body scanned for order numbers
_FOLD = re.compile(rb"\r?\n(?=[ \t])")  # a folded header line goes on
_FIELD = re.compile(
    rb"^(from|subject|auto-submitted|list-id|content-type|content-transfer-encoding"
    rb"|content-disposition)[ \t]*:[ \t]*(.*?)\r?$",
    re.I | re.M,
)
# A single plain-text part in a charset the parser decodes as it is (see _worker_text).
_PLAIN_TEXT = re.compile(r'text/plain\s*(?:;\s*charset\s*=\s*"?(us-ascii|utf-8)"?\s*;?\s*)?', re.I)
_CODINGS = frozenset(("7bit", "8bit", "quoted-printable"))  # as get_payload(decode=True) reads
_NEWLINES = re.compile(r"\r\n?")  # the parser's line endings become "\n" (daemon/mail/body.py)
# A From field that is a bare address or a plain name and an address in angle brackets: read
# without ``parseaddr`` (a tenth of its cost); quotes, comments or groups go to parseaddr.
_PLAIN_FROM = re.compile(
    r"(?:[^<>\"(),;:@\\]*<)?\s*([^<>\s\"(),;:@\\]+@[^<>\s\"(),;:@\\]+)\s*>?\s*"
)

# Start the lookups of a message (its spool id) by a key; the bool says whether it is the key
# the worker will ask with.
Warm = Callable[[str, LookupKey, bool], "asyncio.Future[Any]"]


def spooled_key(path: Path, skip: Iterable[str] = ()) -> tuple[LookupKey, bool] | None:
    """The lookup key a cheap reading of the spool file ``path`` gives, and whether it is
    exactly the key the worker will ask with (:func:`_worker_text`); else it is made of the
    subject and the start of the raw body, good for warming the caches only. None when the
    file is gone (claimed), unreadable, from an address in ``skip`` (the agents) or plainly
    automatic (a bounce, ``Auto-Submitted``, a list): no lookups are made for such mail."""
    try:
        with path.open("rb") as handle:
            envelope = handle.readline()
            head = handle.read(HEAD_BYTES)
        bounce = json.loads(envelope).get("mail_from") in ("", "<>")
    except (OSError, ValueError, AttributeError):
        return None
    if bounce:
        return None
    split = head.find(b"\r\n\r\n")
    split, gap = (split, 4) if split >= 0 else (head.find(b"\n\n"), 2)
    if split < 0:
        return None
    headers = _headers(head[:split])
    automatic = headers.get("auto-submitted", "no").split(";")[0].strip().lower() != "no"
    if automatic or "list-id" in headers:
        return None
    email = _address(headers.get("from", ""))
    if not email or email in skip:
        return None
    raw_subject = headers.get("subject", "")
    body = head[split + gap :]
    exact = _worker_text(headers, body) if len(head) < HEAD_BYTES else None  # read to its end
    if exact is not None and raw_subject.isascii():
        return (email, lookup_text(_worker_subject(raw_subject), exact)), True
    subject = raw_subject.strip()
    if "=?" in subject:  # encoded words
        with contextlib.suppress(ValueError, LookupError):
            subject = str(make_header(decode_header(subject)))
    return (email, lookup_text(subject, body[:BODY_BYTES].decode("utf-8", "replace"))), False


def _worker_text(headers: dict[str, str], body: bytes) -> str | None:
    """The new text the worker's parser finds in the whole ``body`` of a message that is one
    plain-text part (no other ``Content-Type``, no ``Content-Disposition``) in US-ASCII or
    UTF-8, sent as 7bit, 8bit or quoted-printable: decoded as the parser does (the payload as
    ``get_payload(decode=True)`` gives it, its charset decoding, "\\n" line endings) and cut by
    the same reply extraction. None for any other message, or one with a NUL."""
    content = _PLAIN_TEXT.fullmatch(headers.get("content-type", "text/plain").strip())
    coding = headers.get("content-transfer-encoding", "7bit").strip().lower()
    if content is None or coding not in _CODINGS or "content-disposition" in headers:
        return None
    data = quopri.decodestring(body) if coding == "quoted-printable" else body
    text = decode_bytes(data, content.group(1), [], "text part")
    return None if "\x00" in text else extract_new_text(_NEWLINES.sub("\n", text))


def _worker_subject(raw: str) -> str:
    """An ASCII Subject field as the parser reads it (``daemon/mail/parse.py``): its encoded
    words decoded, on one line, at most 998 characters."""
    return one_line(decode_words(raw, []) if "=?" in raw else raw)[:998]


def _address(field: str) -> str:
    """The address of a From field, lower-cased, as ``parseaddr`` reads it."""
    plain = _PLAIN_FROM.fullmatch(field)
    if plain is not None and (("<" in field) == field.rstrip().endswith(">")):
        return plain.group(1).lower()
    return parseaddr(field)[1].lower()


def _headers(block: bytes) -> dict[str, str]:
    """The first of each of the header fields prefetching reads (lower-cased names), unfolded:
    a scan, not a parse (a wrong guess costs only a cache left cold)."""
    found: dict[str, str] = {}
    for name, value in _FIELD.findall(_FOLD.sub(b"", block)):
        found.setdefault(name.decode("ascii").lower(), value.decode("utf-8", "replace"))
    return found


@dataclass
class Listing:
    """What a listing of the spool's waiting messages found."""

    keys: list[tuple[str, tuple[LookupKey, bool] | None]]  # spool id, key: of those not seen yet
    waiting: int  # messages waiting in all
    claimed: int  # of those seen at the last listing, how many the workers took meanwhile


def _new_keys(folder: Path, seen: set[str], skip: frozenset[str]) -> Listing:
    """The spool ids and keys of the oldest ``AHEAD`` messages waiting in ``folder`` that are
    not in ``seen`` (which is brought up to date: the claimed ones leave it)."""
    names = os.listdir(folder)
    window = heapq.nsmallest(AHEAD, names)  # ids sort by arrival (daemon/intake/spool.py)
    before = len(seen)
    seen.intersection_update(window)
    claimed = before - len(seen)
    fresh = [name for name in window if name not in seen]
    seen.update(fresh)
    # A waiting file is named <spool id>.<attempts>.msg (daemon/intake/spool.py).
    keys = [(name.partition(".")[0], spooled_key(folder / name, skip)) for name in fresh]
    return Listing(keys, len(names), claimed)


def _refill_wait(listing: Listing, since: float) -> float:
    """How long a full window may rest before it is listed again: until the workers, at the
    rate they claimed its messages in the ``since`` seconds before ``listing``, have taken
    about ``REFILL`` more, or, when they took none, twice ``since`` (``MAX_REST`` at most).
    No wait while AHEAD or fewer wait: then a new message is the next to warm."""
    if listing.waiting <= AHEAD:
        return 0.0
    if listing.claimed <= 0:
        return min(MAX_REST, 2 * since)
    return min(MAX_REST, REFILL * since / listing.claimed)


def _unchanged(listed: tuple[int, int] | None, changed: int) -> bool:
    """True when the folder, last changed at ``changed`` (its mtime), is as it was when
    ``listed`` (its mtime then, and the time of that listing): a listing made ``SETTLED_NS``
    after its last change saw it, and any change since would have moved its mtime."""
    return listed is not None and listed[0] == changed and listed[1] - changed > SETTLED_NS


async def prefetch_spooled(
    folder: Path, warm: Warm, stop: asyncio.Event, skip: Iterable[str] = ()
) -> None:
    """Until ``stop`` is set: start ``warm(spool_id, key, exact)`` for each message waiting in
    ``folder`` (the spool's ``new``) not seen yet, the oldest ``AHEAD`` at most,
    ``CONCURRENCY`` at once."""
    seen: set[str] = set()
    room = asyncio.Semaphore(CONCURRENCY)
    skipped = frozenset(address.lower() for address in skip)
    listed: tuple[int, int] | None = None  # the folder's mtime at the last listing, and when
    last = time.monotonic()  # when the last listing started
    while not stop.is_set():
        started = time.monotonic()
        keys: list[tuple[str, tuple[LookupKey, bool] | None]] = []
        refill = 0.0
        try:
            changed = os.stat(folder).st_mtime_ns
            if not _unchanged(listed, changed):
                at = time.time_ns()
                listing = await asyncio.to_thread(_new_keys, folder, seen, skipped)
                listed = (changed, at)
                keys, refill = listing.keys, _refill_wait(listing, started - last)
                last = started
        except OSError as error:
            log.debug("prefetch: cannot list %s: %s", folder, error)
            listed = None
        rest = REST_FACTOR * (time.monotonic() - started)
        for spool_id, found in keys:
            if found is not None:
                await room.acquire()
                warm(spool_id, *found).add_done_callback(lambda _done: room.release())
        # A plain sleep: stopping waits for it, but it costs no task (unlike a wait_for the
        # stop event, twenty times a second, also when idle).
        elapsed = time.monotonic() - started
        await asyncio.sleep(max(rest, POLL_SECONDS - elapsed, refill - elapsed))
