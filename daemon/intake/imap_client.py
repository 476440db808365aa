"""One IMAP connection over aioimaplib, with a timeout on every step and UID-only commands.

aioimaplib leaves a command pending forever when the server drops the connection (its IDLE
above all), so every await here races the command against a timeout and against the
connection-lost callback. Any failure surfaces as ``ImapError``; the caller then drops this
connection and opens a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any

import aioimaplib

from postdesk.daemon.config import ImapMailbox, secret_value

log = logging.getLogger("postdesk.imap")
logging.getLogger("aioimaplib").setLevel(logging.WARNING)  # it logs every ignored response

CONNECT_TIMEOUT_SECONDS = 30.0
COMMAND_TIMEOUT_SECONDS = 120.0
LOGOUT_TIMEOUT_SECONDS = 5.0

_FETCH_START = re.compile(rb"\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")


class ImapError(Exception):
    """The server refused a command, did not answer in time, or the connection broke."""


@dataclass(frozen=True)
class FolderInfo:
    """What SELECT tells about a folder."""

    uidvalidity: int
    exists: int
    keywords_allowed: bool


@dataclass(frozen=True)
class MessageInfo:
    """What is known about a message before its body is fetched."""

    uid: int
    size: int
    flags: frozenset[str]


class ImapConnection:
    """A logged-in connection to one mailbox's server."""

    def __init__(self, mailbox: ImapMailbox) -> None:
        self.mailbox = mailbox
        self._lost = asyncio.Event()
        self._imap: Any = None

    @classmethod
    async def open(cls, mailbox: ImapMailbox) -> ImapConnection:
        """Connect (TLS, STARTTLS or plain, as configured) and log in."""
        password = secret_value(
            mailbox.password, mailbox.password_env, f"imap.{mailbox.name}.password"
        )
        connection = cls(mailbox)
        try:
            await connection._connect(password)
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _connect(self, password: str) -> None:
        mailbox = self.mailbox
        context = _tls_context(mailbox.verify_tls) if mailbox.security != "none" else None
        self._imap = aioimaplib.IMAP4(
            host=mailbox.host,
            port=mailbox.port,
            timeout=COMMAND_TIMEOUT_SECONDS,
            conn_lost_cb=lambda _error: self._lost.set(),
            ssl_context=context if mailbox.security == "tls" else None,
        )
        await self._call("connect", self._imap.wait_hello_from_server(), CONNECT_TIMEOUT_SECONDS)
        if mailbox.security == "starttls":
            assert context is not None
            await self._starttls(context)
        login = self._imap.login(aioimaplib.quoted(mailbox.username), password)
        response = await self._call("LOGIN", login)
        _expect_ok(response, f"LOGIN as {mailbox.username}")

    async def _starttls(self, context: ssl.SSLContext) -> None:
        protocol = self._imap.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError("the server does not offer STARTTLS (set security = tls or none)")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        _expect_ok(await self._call("STARTTLS", protocol.execute(command)), "STARTTLS")
        upgrade = asyncio.get_running_loop().start_tls(
            protocol.transport, protocol, context, server_hostname=self.mailbox.host
        )
        protocol.transport = await self._call("TLS handshake", upgrade, CONNECT_TIMEOUT_SECONDS)
        await self._call("CAPABILITY", protocol.capability())

    def has(self, capability: str) -> bool:
        """Whether the server announced ``capability``."""
        return bool(self._imap.has_capability(capability))

    async def select(self, folder: str) -> FolderInfo:
        """SELECT ``folder`` read-write."""
        response = await self._call("SELECT", self._imap.select(aioimaplib.quoted(folder)))
        _expect_ok(response, f"SELECT {folder}")
        text = b"\n".join(line for line in response.lines if isinstance(line, bytes))
        validity = re.search(rb"\[UIDVALIDITY (\d+)\]", text)
        exists = re.search(rb"(\d+) EXISTS", text)
        permanent = re.search(rb"\[PERMANENTFLAGS \(([^)]*)\)\]", text)
        if validity is None:
            raise ImapError(f"SELECT {folder}: the server sent no UIDVALIDITY")
        return FolderInfo(
            uidvalidity=int(validity.group(1)),
            exists=int(exists.group(1)) if exists else 0,
            keywords_allowed=permanent is None or b"\\*" in permanent.group(1).split(),
        )

    async def status(self, folder: str) -> dict[str, int]:
        """STATUS of ``folder``: MESSAGES, UNSEEN, UIDNEXT and UIDVALIDITY."""
        names = "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY)"
        response = await self._call("STATUS", self._imap.status(aioimaplib.quoted(folder), names))
        _expect_ok(response, f"STATUS {folder}")
        text = b" ".join(line for line in response.lines if isinstance(line, bytes))
        return {k.decode(): int(v) for k, v in re.findall(rb"([A-Z]+) (\d+)", text)}

    async def uids_after(self, last_uid: int) -> list[int]:
        """The UIDs above ``last_uid``, ascending (selection by UID, never by \\Seen)."""
        search = self._imap.protocol.search("UID", f"{last_uid + 1}:*", charset=None, by_uid=True)
        response = await self._call("UID SEARCH", search)
        _expect_ok(response, "UID SEARCH")
        found: set[int] = set()
        for line in response.lines:
            if isinstance(line, bytes) and (line[:1].isdigit() or line.startswith(b"SEARCH")):
                found.update(int(n) for n in re.findall(rb"\d+", line))
        return sorted(uid for uid in found if uid > last_uid)  # "n:*" always matches the last

    async def fetch_info(self, uids: list[int]) -> list[MessageInfo]:
        """UID, size and flags of ``uids``; messages expunged meanwhile are simply absent."""
        lines, wanted = await self._fetch(uids, "(UID RFC822.SIZE FLAGS)"), set(uids)
        infos = []
        for text, _literal in _fetch_records(lines):
            uid, size, flags = _UID.search(text), _SIZE.search(text), _FLAGS.search(text)
            if uid and size and int(uid.group(1)) in wanted:
                names = flags.group(1).decode(errors="replace").split() if flags else []
                infos.append(MessageInfo(int(uid.group(1)), int(size.group(1)), frozenset(names)))
        return sorted(infos, key=lambda info: info.uid)

    async def fetch_bodies(self, uids: list[int]) -> dict[int, bytes]:
        """The raw bytes of ``uids`` by UID, without setting \\Seen."""
        bodies: dict[int, bytes] = {}
        lines, wanted = await self._fetch(uids, "(UID BODY.PEEK[])"), set(uids)
        for text, literal in _fetch_records(lines):
            uid = _UID.search(text)
            if uid and literal is not None and int(uid.group(1)) in wanted:
                bodies[int(uid.group(1))] = literal
        return bodies

    async def fetch_headers(self, uids: list[int], names: Iterable[str]) -> dict[int, bytes]:
        """Only the header fields ``names`` of ``uids`` by UID, without setting \\Seen."""
        items = f"(UID BODY.PEEK[HEADER.FIELDS ({' '.join(names).upper()})])"
        headers: dict[int, bytes] = {}
        lines, wanted = await self._fetch(uids, items), set(uids)
        for text, literal in _fetch_records(lines):
            uid = _UID.search(text)
            if uid and literal is not None and int(uid.group(1)) in wanted:
                headers[int(uid.group(1))] = literal
        return headers

    async def _fetch(self, uids: list[int], items: str) -> list[Any]:
        response = await self._call("UID FETCH", self._imap.uid("fetch", uid_set(uids), items))
        _expect_ok(response, "UID FETCH")
        return list(response.lines)

    async def add_flag(self, uids: list[int], flag: str) -> None:
        """Add ``flag`` (a keyword or a system flag) to ``uids``."""
        store = self._imap.uid("store", uid_set(uids), "+FLAGS.SILENT", f"({flag})")
        _expect_ok(await self._call("UID STORE", store), f"UID STORE +FLAGS {flag}")

    async def create(self, folder: str) -> None:
        """Create ``folder`` unless it exists."""
        response = await self._call("CREATE", self._imap.create(aioimaplib.quoted(folder)))
        text = b" ".join(line for line in response.lines if isinstance(line, bytes))
        if response.result != "OK" and b"ALREADYEXISTS" not in text:
            log.warning("CREATE %s refused: %s", folder, text.decode(errors="replace"))

    async def move(self, uids: list[int], folder: str) -> None:
        """Move ``uids`` to ``folder``: UID MOVE when offered, else COPY, \\Deleted and EXPUNGE."""
        target = aioimaplib.quoted(folder)
        if self.has("MOVE"):
            response = await self._call("UID MOVE", self._imap.uid("move", uid_set(uids), target))
            _expect_ok(response, f"UID MOVE to {folder}")
            return
        response = await self._call("UID COPY", self._imap.uid("copy", uid_set(uids), target))
        _expect_ok(response, f"UID COPY to {folder}")
        await self.add_flag(uids, "\\Deleted")
        if self.has("UIDPLUS"):
            expunge = self._imap.uid("expunge", uid_set(uids))
        else:
            expunge = self._imap.expunge()
        _expect_ok(await self._call("EXPUNGE", expunge), "EXPUNGE")

    async def idle(self, seconds: float) -> None:
        """IDLE until the server reports a change, or for ``seconds`` at most."""
        queue = self._imap.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()  # reports from before the last sync are stale
        idle = await self._call("IDLE", self._imap.idle_start(timeout=seconds + 60))
        try:
            await self._call("IDLE wait", queue.get(), seconds)
        except ImapError:
            if self._lost.is_set():
                raise  # else nothing happened within ``seconds``
        self._imap.idle_done()
        _expect_ok(await self._call("IDLE DONE", idle), "IDLE")

    async def close(self) -> None:
        """Log out politely when the connection still works, then drop it."""
        imap, self._imap = self._imap, None
        if imap is None:
            return
        protocol = imap.protocol
        if not self._lost.is_set() and protocol.state in (aioimaplib.AUTH, aioimaplib.SELECTED):
            if imap.has_pending_idle():
                imap.idle_done()  # LOGOUT waits for the IDLE command to end
            with contextlib.suppress(TimeoutError, aioimaplib.AioImapException, OSError):
                await asyncio.wait_for(imap.logout(), LOGOUT_TIMEOUT_SECONDS)
        if protocol.transport is not None:
            protocol.transport.abort()
        if not imap._client_task.done():  # still connecting: aioimaplib offers no other handle
            imap._client_task.cancel()

    async def _call(
        self, what: str, step: Awaitable[Any], timeout: float = COMMAND_TIMEOUT_SECONDS
    ) -> Any:
        """Await ``step``; raise ImapError when it fails, times out or the connection drops."""
        task = asyncio.ensure_future(step)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {task, lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
        if task not in done:
            why = "connection lost" if lost in done else f"no answer within {timeout:g} s"
            raise ImapError(f"{self._where()}: {what}: {why}")
        try:
            return task.result()
        except aioimaplib.CommandTimeout as error:  # aioimaplib's own timer, reset by any data
            why = f"no answer within {COMMAND_TIMEOUT_SECONDS:g} s"
            raise ImapError(f"{self._where()}: {what}: {why}") from error
        except (aioimaplib.AioImapException, OSError, ValueError, TimeoutError) as error:
            detail = str(error) or type(error).__name__
            raise ImapError(f"{self._where()}: {what}: {detail}") from error

    def _where(self) -> str:
        return f"{self.mailbox.host}:{self.mailbox.port}"


def uid_set(uids: Iterable[int]) -> str:
    """A compact IMAP sequence set of UIDs: [1, 2, 3, 7] gives "1:3,7"."""
    ranges: list[list[int]] = []
    for uid in sorted(uids):
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in ranges)


def _fetch_records(lines: list[Any]) -> list[tuple[bytes, bytes | None]]:
    """Group FETCH response lines per message: (text of the items, the literal if any)."""
    records: list[tuple[bytes, bytes | None]] = []
    text, literal = b"", None
    for line in lines:
        if isinstance(line, bytearray):
            literal = bytes(line)
        elif isinstance(line, bytes) and _FETCH_START.match(line):
            if text:
                records.append((text, literal))
            text, literal = line, None
        elif isinstance(line, bytes) and text:
            text += b" " + line
    if text:
        records.append((text, literal))
    return records


def _expect_ok(response: Any, what: str) -> None:
    if response.result != "OK":
        text = b" ".join(line for line in response.lines if isinstance(line, bytes))
        raise ImapError(f"{what} refused: {response.result} {text.decode(errors='replace')}")


def _tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
