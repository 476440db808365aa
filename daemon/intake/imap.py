"""IMAP intake: one poller per ``[[imap]]`` mailbox feeding the spool, as SMTP intake does.

Per mailbox, in its own task and crash boundary: take the mailbox's lease, connect, SELECT, then
take every message whose UID is above the saved watermark (never "UNSEEN": mail a person already
read is still taken in), batch by batch: sizes and flags first, bodies of those within the size
limit, each body into the spool (the point of commitment), then MOVE or flag them on the server,
then save the watermark. A message over the size limit is never fetched: its sender is read from
a few header fields, the operator is alerted, the sender may get one notice (``on_oversize``),
and the message is moved to the ``TooLarge`` folder (flagged where the server refuses that). A crash anywhere in between only means a message is fetched and spooled
again, and the worker's dedupe step stores it once. Then IDLE (or sleep) and repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterator

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import ConfigError, ImapMailbox, Settings, secret_value
from postdesk.daemon.intake.committed import wait_settled
from postdesk.daemon.intake.imap_client import ImapConnection, ImapError, MessageInfo
from postdesk.daemon.intake.imap_state import LeaseLost, MailboxState, Watermark, owner_id
from postdesk.daemon.intake.spool import Envelope, Spool

log = logging.getLogger("postdesk.imap")

FLAG_SPOOLED = "$PostdeskSpooled"  # flag mode: the message is in our spool
FLAG_TOO_LARGE = "$PostdeskTooLarge"  # over smtp.max_message_bytes: left on the server
FLAG_QUARANTINED = "$PostdeskQuarantined"  # could not be processed: in quarantine, left here
TOO_LARGE_FOLDER = "TooLarge"  # over smtp.max_message_bytes: set aside here
NOTICE_HEADERS = ("from", "return-path", "auto-submitted", "precedence", "list-id")
AUTOMATIC_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
SYSTEM_LOCALPARTS = {"mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply"}
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
ALERT_AFTER_FAILURES = 5
IDLE_MAX_SECONDS = 25 * 60.0
LEASE_SECONDS = 30.0
LEASE_RENEW_SECONDS = 10.0
MAX_BATCH = 500
BODY_ROUND_MESSAGES = 50
BODY_ROUND_BYTES = 32 * 1024 * 1024
EXPECTED_ERRORS = (ImapError, LeaseLost, ConfigError, SQLAlchemyError, OSError)


def imap_pollers(
    settings: Settings,
    factory: sessionmaker[Session],
    spool: Spool,
    on_spooled: Callable[[], None],
    on_alert: Callable[[str, dict[str, object]], None] | None = None,
    owner: str | None = None,
    on_oversize: Callable[[str, dict[str, object]], object] | None = None,
) -> list[MailboxPoller]:
    """One poller per configured mailbox; raises ConfigError when a password is missing.

    ``on_alert(event, detail)`` hears of mail left on the server (``alert.imap_oversize``);
    ``on_oversize(sender, detail)`` (run in a thread) may send that mail's sender a notice.
    ``owner`` names this daemon in the leases (``serve`` passes its stable daemon_id, so a
    restarted daemon takes back its own lease at once); by default a per-process name.
    """
    for mailbox in settings.imap:
        secret_value(mailbox.password, mailbox.password_env, f"imap.{mailbox.name}.password")
    owner = owner or owner_id()
    return [
        MailboxPoller(m, settings, factory, spool, on_spooled, owner, on_alert, on_oversize)
        for m in settings.imap
    ]


class MailboxPoller:
    """Takes new mail from one mailbox into the spool, for as long as it holds the lease."""

    def __init__(
        self,
        mailbox: ImapMailbox,
        settings: Settings,
        factory: sessionmaker[Session],
        spool: Spool,
        on_spooled: Callable[[], None],
        owner: str,
        on_alert: Callable[[str, dict[str, object]], None] | None = None,
        on_oversize: Callable[[str, dict[str, object]], object] | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.on_alert = on_alert
        self.on_oversize = on_oversize
        self.max_bytes = settings.smtp.max_message_bytes
        self.recipient = settings.helpdesk.address
        self.spool = spool
        self.on_spooled = on_spooled
        self.state = MailboxState(factory, mailbox.name, owner)
        self.factory = factory
        self.failures = 0
        self.errors = 0  # every failed poll since start, for the metrics
        self.spooled = 0
        self.standing_by = False
        self.keywords_allowed = True

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set. Every error is logged here and retried after a backoff."""
        while not stop.is_set():
            try:
                await self._lease_then_poll(stop)
            except Exception as error:
                self.failures += 1
                self.errors += 1
                delay = backoff_seconds(self.failures)
                expected = isinstance(error, EXPECTED_ERRORS)
                alert = "ALERT " if self.failures == ALERT_AFTER_FAILURES else ""
                log.log(
                    logging.ERROR if alert or not expected else logging.WARNING,
                    "%smailbox %s: %s: %s; retrying in %.1f s (failure %d)",
                    alert,
                    self.mailbox.name,
                    type(error).__name__,
                    " ".join(str(error).split())[:300],
                    delay,
                    self.failures,
                    exc_info=None if expected else error,
                )
                await _sleep(stop, delay)
        log.info(
            "mailbox %s: stopped after spooling %d message(s)", self.mailbox.name, self.spooled
        )

    async def _lease_then_poll(self, stop: asyncio.Event) -> None:
        if not await asyncio.to_thread(self.state.acquire, LEASE_SECONDS):
            if not self.standing_by:
                log.info("mailbox %s: polled by another daemon; standing by", self.mailbox.name)
            self.standing_by = True
            await _sleep(stop, LEASE_RENEW_SECONDS)
            return
        if self.standing_by:
            log.warning("mailbox %s: lease taken over from another daemon", self.mailbox.name)
        self.standing_by = False
        tasks = [
            asyncio.create_task(self._poll()),
            asyncio.create_task(self._keep_lease()),
            asyncio.create_task(stop.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(self._release)
        for task in done:
            task.result()  # raises what ended the poll or the lease

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(LEASE_RENEW_SECONDS)
            if not await asyncio.to_thread(self.state.acquire, LEASE_SECONDS):
                raise LeaseLost(f"mailbox {self.mailbox.name}: another daemon took the lease")

    def _release(self) -> None:
        try:
            self.state.release()
        except SQLAlchemyError as error:
            log.warning("mailbox %s: could not release the lease: %s", self.mailbox.name, error)

    async def _poll(self) -> None:
        connection = await ImapConnection.open(self.mailbox)
        try:
            mark = await self._select(connection)
            if self.mailbox.after == "move":
                await connection.create(self.mailbox.move_to)
            while True:
                mark = await self._sync(connection, mark)
                self.failures = 0
                await self._wait_for_mail(connection)
        finally:
            await connection.close()

    async def _select(self, connection: ImapConnection) -> Watermark:
        """SELECT the folder; start over from UID 0 when its UIDVALIDITY is not the saved one."""
        folder = await connection.select(self.mailbox.folder)
        self.keywords_allowed = folder.keywords_allowed
        if not folder.keywords_allowed:
            log.warning("mailbox %s: the server allows no keyword flags", self.mailbox.name)
        saved = await asyncio.to_thread(self.state.load)
        same = saved.uidvalidity == folder.uidvalidity
        mark = saved if same else Watermark(folder.uidvalidity, 0)
        log.info(
            "mailbox %s: %s selected, %d message(s), reading from UID %d",
            *(self.mailbox.name, self.mailbox.folder, folder.exists, mark.last_uid),
        )
        if saved.uidvalidity and not same:
            log.warning(
                "mailbox %s: UIDVALIDITY of %s changed from %d to %d: reading it again from the "
                "start; messages already taken in are recognised and stored once",
                *(self.mailbox.name, self.mailbox.folder, saved.uidvalidity, folder.uidvalidity),
            )
        if not same:
            await asyncio.to_thread(self.state.save, mark)
        return mark

    async def _sync(self, connection: ImapConnection, mark: Watermark) -> Watermark:
        """Take everything above the watermark, until a search finds nothing new."""
        batch = max(1, min(self.mailbox.batch_size, MAX_BATCH))
        while uids := await connection.uids_after(mark.last_uid):
            for start in range(0, len(uids), batch):
                mark = await self._take_batch(connection, mark, uids[start : start + batch])
        return mark

    async def _take_batch(
        self, connection: ImapConnection, mark: Watermark, uids: list[int]
    ) -> Watermark:
        infos = await connection.fetch_info(uids)
        done = {FLAG_SPOOLED, FLAG_TOO_LARGE, FLAG_QUARANTINED}
        taken_before = [i.uid for i in infos if FLAG_SPOOLED in i.flags]
        fresh = [i for i in infos if not i.flags & done]
        too_large = [i for i in fresh if i.size > self.max_bytes]
        taken = await self._spool_bodies(connection, [i for i in fresh if i.size <= self.max_bytes])
        held = await wait_settled(self.spool, self.factory, set(taken.values()))
        spooled = [uid for uid, spool_id in taken.items() if spool_id not in held]
        poison = [uid for uid, spool_id in taken.items() if spool_id in held]
        if poison:
            log.warning(
                "mailbox %s: UID(s) %s quarantined: flagged %s and left on the server",
                *(self.mailbox.name, ", ".join(map(str, poison)), FLAG_QUARANTINED),
            )
        await self._flag(connection, poison, FLAG_QUARANTINED)
        await self._set_aside(connection, too_large)
        if self.mailbox.after == "move" and (spooled or taken_before):
            await connection.move(sorted(spooled + taken_before), self.mailbox.move_to)
        elif self.mailbox.after == "flag":
            await self._flag(connection, spooled, FLAG_SPOOLED)
        mark = Watermark(mark.uidvalidity, uids[-1])
        await asyncio.to_thread(self.state.save, mark)
        if spooled:
            log.info(
                "mailbox %s: spooled %d message(s), up to UID %d",
                self.mailbox.name,
                len(spooled),
                uids[-1],
            )
        return mark

    async def _set_aside(self, connection: ImapConnection, too_large: list[MessageInfo]) -> None:
        """Alert on each message over the limit, notice its sender, move it out of the way."""
        if not too_large:
            return
        uids = [info.uid for info in too_large]
        headers = await connection.fetch_headers(uids, NOTICE_HEADERS)
        for info in too_large:
            sender = notice_address(headers.get(info.uid, b""))
            log.warning(
                "ALERT mailbox %s: UID %d from %s is %d bytes, over smtp.max_message_bytes (%d): "
                "set aside in %s",
                *(self.mailbox.name, info.uid, sender or "-", info.size, self.max_bytes),
                TOO_LARGE_FOLDER,
            )
            detail: dict[str, object] = {
                "mailbox": self.mailbox.name,
                "uid": info.uid,
                "size": info.size,
                "limit": self.max_bytes,
                "from": sender or "",
            }
            if self.on_alert is not None:
                self.on_alert("alert.imap_oversize", detail)
            if sender and self.on_oversize is not None:
                await asyncio.to_thread(self.on_oversize, sender, detail)
        try:
            await connection.create(TOO_LARGE_FOLDER)
            await connection.move(uids, TOO_LARGE_FOLDER)
        except ImapError as error:
            log.warning(
                "mailbox %s: cannot move UID(s) %s to %s (%s): flagged %s instead",
                *(self.mailbox.name, ", ".join(map(str, uids)), TOO_LARGE_FOLDER),
                *(" ".join(str(error).split())[:200], FLAG_TOO_LARGE),
            )
            await self._flag(connection, uids, FLAG_TOO_LARGE)

    async def _spool_bodies(
        self, connection: ImapConnection, wanted: list[MessageInfo]
    ) -> dict[int, str]:
        """Fetch bodies a bounded round at a time and spool each; returns UID -> spool id."""
        spooled: dict[int, str] = {}
        for group in _rounds(wanted):
            bodies = await connection.fetch_bodies([info.uid for info in group])
            for info in group:
                raw = bodies.get(info.uid)
                if raw is None:
                    log.warning(
                        "mailbox %s: UID %d vanished before its body was fetched",
                        self.mailbox.name,
                        info.uid,
                    )
                    continue
                envelope = self._envelope(info.uid)
                spooled[info.uid] = await asyncio.to_thread(self.spool.write, raw, envelope)
                self.on_spooled()
        self.spooled += len(spooled)
        return spooled

    def _envelope(self, uid: int) -> Envelope:
        mailbox = self.mailbox
        return Envelope(
            mail_from="",
            rcpt_tos=(self.recipient,),
            channel=f"imap:{mailbox.name}",
            received_at=time.time(),
            peer=f"{mailbox.host}:{mailbox.port} {mailbox.folder} UID {uid}",
        )

    async def _flag(self, connection: ImapConnection, uids: list[int], flag: str) -> None:
        if uids and self.keywords_allowed:
            await connection.add_flag(uids, flag)

    async def _wait_for_mail(self, connection: ImapConnection) -> None:
        """IDLE when offered, re-IDLEing at least every 25 min; else sleep ``poll_seconds``."""
        seconds = max(1.0, min(float(self.mailbox.poll_seconds), IDLE_MAX_SECONDS))
        if self.mailbox.idle and connection.has("IDLE"):
            await connection.idle(seconds)
        else:
            await asyncio.sleep(seconds)


def notice_address(header_bytes: bytes) -> str | None:
    """Where a "too large" notice may go: the sender of a person's mail, None for automatic mail.

    Prefers Return-Path (the bounce address) to From; ``<>`` and the RFC 3834 markers mean none.
    """
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(header_bytes)
    return_path = str(headers.get("return-path", "")).strip()
    auto = str(headers.get("auto-submitted", "no")).split(";")[0].strip().lower()
    precedence = str(headers.get("precedence", "")).strip().lower()
    if return_path == "<>" or auto != "no" or precedence in AUTOMATIC_PRECEDENCE:
        return None
    if headers.get("list-id") is not None:
        return None
    _name, address = email.utils.parseaddr(return_path or str(headers.get("from", "")))
    address = address.strip().lower()
    if address.count("@") != 1 or any(c.isspace() or c in "<>,;\r\n" for c in address):
        return None
    return None if address.partition("@")[0] in SYSTEM_LOCALPARTS else address


def backoff_seconds(failures: int) -> float:
    """Exponential backoff with jitter: about 1, 2, 4 ... s, capped at BACKOFF_MAX_SECONDS."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2.0 ** min(failures - 1, 30))
    return ceiling * random.uniform(0.5, 1.0)


def _rounds(infos: list[MessageInfo]) -> Iterator[list[MessageInfo]]:
    """Split into FETCH rounds bounded by message count and total size."""
    group: list[MessageInfo] = []
    size = 0
    for info in infos:
        if group and (len(group) >= BODY_ROUND_MESSAGES or size + info.size > BODY_ROUND_BYTES):
            yield group
            group, size = [], 0
        group.append(info)
        size += info.size
    if group:
        yield group


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def check_mailboxes(settings: Settings) -> list[tuple[str, str | None, str]]:
    """Log in to every mailbox and count its folder: (check name, error or None, detail)."""
    return [asyncio.run(_check(mailbox)) for mailbox in settings.imap]


async def _check(mailbox: ImapMailbox) -> tuple[str, str | None, str]:
    where = f"{mailbox.username}@{mailbox.host}:{mailbox.port} ({mailbox.security})"
    try:
        connection = await ImapConnection.open(mailbox)
        try:
            counts = await connection.status(mailbox.folder)
        finally:
            await connection.close()
    except (ImapError, ConfigError) as error:
        return f"imap {mailbox.name}", f"{where}: {error}", ""
    detail = (
        f"{where} folder {mailbox.folder}: {counts.get('MESSAGES', 0)} message(s), "
        f"{counts.get('UNSEEN', 0)} unseen, next UID {counts.get('UIDNEXT', 0)}"
    )
    return f"imap {mailbox.name}", None, detail
