"""SMTP intake: accept mail for the helpdesk, spool it durably, and only then answer 250.

This module only queues (like Mailman's LMTP runner): it never parses or touches the database.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from postdesk.daemon.config import Settings
from postdesk.daemon.intake.groupcommit import GroupCommit
from postdesk.daemon.intake.spool import Envelope as SpoolEnvelope
from postdesk.daemon.intake.spool import IncomingFile, Spool

log = logging.getLogger("postdesk.intake")

OK_QUEUED = "250 2.0.0 Ok: queued as {spool_id}"
OK_RECIPIENT = "250 2.1.5 Ok"
UNKNOWN_RECIPIENT = "550 5.1.1 No such mailbox here: {address}"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
TOO_BIG = "552 5.3.4 Message too big for this system"
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, please try again later"
SPOOL_FULL = "452 4.3.1 Insufficient system storage, please try again later"
BUSY = "451 4.3.2 Too busy, please try again later"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, please try again later"
TLS_REQUIRED = "530 5.7.0 Must issue a STARTTLS command first"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, please try again later"
LINE_TOO_LONG = "500 5.5.2 Line too long (see RFC 5321 4.5.3.1.6)"
START_DATA = "354 End data with <CR><LF>.<CR><LF>"
REFUSAL_LOG_SECONDS = 60.0
RECOUNT_SECONDS = 1.0  # the spool's waiting files are counted at most this often below high water
ADDRESSES_KEPT = 4096  # parsed MAIL FROM / RCPT TO arguments remembered (IntakeSMTP._getaddr)
_ALIVE_EVERY = 65_536  # DATA bytes between restarts of the idle timer


class IntakeHandler:
    """aiosmtpd handler: checks senders and recipients, spools DATA (streamed to it by
    ``IntakeSMTP``), never lets an error become 5xx."""

    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        on_spooled: Callable[[], None],
        database_ok: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.group = GroupCommit(spool)
        self.on_spooled = on_spooled
        self.database_ok = database_ok
        self.closing = False
        self.accepted = 0
        self.connections = 0  # open SMTP sessions, against smtp.max_connections
        self.receiving = 0  # DATA transfers in progress: a stop waits for them
        self.refused_connections = 0
        self._refusal_logged_at = -REFUSAL_LOG_SECONDS
        self._waiting = 0  # the spool's waiting files when last counted, plus those spooled since
        self._recount_at = 0.0
        self.addresses: dict[str, tuple[str | None, str | None]] = {}  # see IntakeSMTP._getaddr

    def admit(self) -> bool:
        """Count a new session in, or refuse it (False) when ``smtp.max_connections`` are open."""
        if self.connections < self.settings.smtp.max_connections:
            self.connections += 1
            return True
        self.refused_connections += 1
        now = time.monotonic()
        if now - self._refusal_logged_at >= REFUSAL_LOG_SECONDS:
            self._refusal_logged_at = now
            log.warning(
                "%d SMTP sessions open (smtp.max_connections): refusing new ones with 421, "
                "%d refused so far",
                self.connections,
                self.refused_connections,
            )
        return False

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Refuse new mail while shutting down, out of disk, or while the database is down."""
        if self.closing:
            return SHUTTING_DOWN
        if not self.database_ok():
            return TEMPORARY_FAILURE
        if self.spool.free_bytes() < 1.5 * self.settings.smtp.max_message_bytes:
            return SPOOL_FULL
        if self._spool_busy():
            return BUSY
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    def _spool_busy(self) -> bool:
        """Whether the spool is at its high-water mark. Counting it lists two folders, which
        costs more the longer the backlog: it is counted every ``RECOUNT_SECONDS``, and in
        between estimated from above (the last count plus what was spooled since); an estimate
        at the mark is always recounted, so a busy answer is never given on an estimate."""
        now = time.monotonic()
        high_water = self.settings.smtp.spool_high_water
        if now >= self._recount_at or self._waiting >= high_water:
            self._waiting = self.spool.pending()
            self._recount_at = now + RECOUNT_SECONDS
        return self._waiting >= high_water

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept only helpdesk addresses, at RCPT time, up to the recipient cap."""
        if self.closing:
            return SHUTTING_DOWN
        if address.lower() not in self.settings.helpdesk.addresses:
            return UNKNOWN_RECIPIENT.format(address=_printable(address))
        if len(envelope.rcpt_tos) >= self.settings.smtp.max_recipients:
            return TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        return OK_RECIPIENT

    def open_message(self, session: Session, envelope: Envelope) -> IncomingFile:
        """Start spooling the message whose DATA is about to arrive."""
        meta = SpoolEnvelope(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            channel="smtp",
            received_at=time.time(),
            peer=str(session.peer[0]) if session.peer else "",
        )
        return self.spool.open(meta)

    async def commit(self, incoming: IncomingFile, peer: str) -> str:
        """Make a fully received message durable and answer 250 only once it is safe, or 451
        when its flush failed. Messages ending while a flush runs share the next one (group
        commit, ``GroupCommit``); ``incoming`` belongs to the flush from this call on.

        A DATA still arriving when the daemon is told to stop finishes (R-11): the spool keeps
        it for the next start, so the client need not send it again.
        """
        spool_id = await self.group.commit(incoming)
        if spool_id is None:
            return TEMPORARY_FAILURE
        self.accepted += 1
        self._waiting += 1
        self.on_spooled()
        log.info(
            "accepted %s (%d bytes) from %s",
            spool_id,
            incoming.size,
            peer,
            extra={"spool_id": spool_id},
        )
        return OK_QUEUED.format(spool_id=spool_id)

    async def handle_exception(self, error: Exception) -> str:
        """Any failure while handling a command is temporary to the client: 451, never 500."""
        log.error("intake failed, answering 451: %r", error, exc_info=error)
        return TEMPORARY_FAILURE


class IntakeSMTP(SMTP):
    """aiosmtpd's server with our line-length policy and enhanced codes on its size replies."""

    def __init__(self, handler: IntakeHandler, settings: Settings, **kwargs: Any) -> None:
        self._intake = handler
        self._admitted = self._refused = False
        # Real mail (HTML from some clients) has long lines; accept them rather than bounce.
        self.line_length_limit = settings.smtp.max_line_length
        super().__init__(
            handler,
            data_size_limit=settings.smtp.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            timeout=settings.smtp.idle_timeout,
            hostname=settings.helpdesk.domain,
            ident="postdesk ESMTP",
            **kwargs,
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the session under ``smtp.max_connections``, or answer 421 4.7.0 and close."""
        if self.transport is None and not self._admitted:  # not STARTTLS's second call
            if not self._intake.admit():
                self._refused = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(TOO_MANY_CONNECTIONS.encode() + b"\r\n")
                transport.close()
                return
            self._admitted = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        """Release the session's place (a refused session never took one)."""
        if self._refused:
            return
        if self._admitted:
            self._admitted = False
            self._intake.connections -= 1
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        """Ignore what a refused client sends while its connection closes."""
        if not self._refused:
            super().data_received(data)

    def eof_received(self) -> bool | None:
        """A refused client's EOF needs no handling."""
        return False if self._refused else super().eof_received()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's parse of a MAIL FROM or RCPT TO argument (about 30 µs: the email
        package's parser, and a class built per call), remembered per argument: the helpdesk's
        addresses and frequent senders come again and again."""
        addresses = self._intake.addresses
        parsed = addresses.get(arg)
        if parsed is None:
            parsed = super()._getaddr(arg)
            if len(addresses) >= ADDRESSES_KEPT:
                addresses.clear()
            addresses[arg] = parsed
        return parsed

    async def push(self, status: str) -> None:  # type: ignore[override]
        """Send a reply, rewriting aiosmtpd's own size errors to ``552 5.3.4``."""
        if status.startswith("530 Must issue a STARTTLS"):  # aiosmtpd's, without the code
            status = TLS_REQUIRED
        await super().push(TOO_BIG if status.startswith("552 Error") else status)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """Receive DATA straight into the spool, so a large message is never held in memory.

        Same rules as aiosmtpd's own DATA: only ``<CRLF>.<CRLF>`` ends the data (a bare LF or
        CR never does: SMTP smuggling, R-08), dot-unstuffing, a line longer than
        ``smtp.max_line_length`` answers 500 and too much data 552, both after the end of data.
        The spool file is removed on every path but a committed 250, a cut connection included.
        ``smtp.idle_timeout`` counts from the last data received, not from the DATA command, so
        a large message over a slow link is not cut.
        """
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        if self._intake.closing:
            await self.push(SHUTTING_DOWN)
            return
        await self.push(START_DATA)
        incoming = self._intake.open_message(self.session, self.envelope)
        self._intake.receiving += 1
        try:
            status = await self._spooled(incoming)
            await self.push(status)
        finally:
            self._intake.receiving -= 1

    async def _spooled(self, incoming: IncomingFile) -> str:
        """Receive the message into ``incoming`` and commit it; the reply to give. Nothing of a
        refused message is left once this returns; a received one belongs to the commit (which
        spools it or removes it, even if this connection is lost while it waits)."""
        assert self.session is not None
        try:
            refusal = await self._receive(incoming)
        except BaseException:
            incoming.discard()
            raise
        finally:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
        if refusal is not None:
            incoming.discard()
            return refusal
        peer = str(self.session.peer[0]) if self.session.peer else ""
        return await self._intake.commit(incoming, peer)

    async def _receive(self, incoming: IncomingFile) -> str | None:
        """Copy DATA lines (dot-unstuffed) to ``incoming`` up to the lone dot; a refusal, if any.

        Mirrors ``aiosmtpd.smtp.SMTP.smtp_DATA`` line by line, but writes instead of collecting.
        """
        limit = self.data_size_limit
        size = 0
        alive_at = 0  # size at which the idle timer is restarted next: data is not idleness
        line_start = True  # the next read starts a line
        refusal: str | None = None
        while True:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.CancelledError:
                log.info("connection lost during DATA")
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as error:  # longer than the reader's limit
                refusal = refusal or LINE_TOO_LONG
                line = await self._reader.read(error.consumed)
            if line_start and line == b".\r\n":
                return refusal
            size += len(line)
            if size >= alive_at:
                self._reset_timeout()
                alive_at = size + _ALIVE_EVERY
            line_start = line.endswith(b"\r\n")
            if refusal is None and limit and size > limit:
                refusal = TOO_BIG
            if refusal is not None:
                continue  # read on to the end of DATA, keeping nothing
            if len(line) > self.line_length_limit:
                refusal = LINE_TOO_LONG
            else:  # a whole line: a piece of one always comes with a refusal
                refusal = self._write(incoming, line[1:] if line[:1] == b"." else line)

    def _write(self, incoming: IncomingFile, line: bytes) -> str | None:
        """Append one line to the spool file; a 451 refusal when the disk fails us."""
        try:
            incoming.write(line)
        except OSError as error:
            log.error("writing the spool failed, answering 451: %r", error)
            return TEMPORARY_FAILURE
        return None


async def start_smtp(
    handler: IntakeHandler, settings: Settings, tls_context: ssl.SSLContext | None = None
) -> asyncio.Server:
    """Listen for SMTP on the configured address (offering STARTTLS with ``tls_context``);
    returns the running server."""
    host, port = settings.smtp.host_port
    loop = asyncio.get_running_loop()
    tls = {"tls_context": tls_context, "require_starttls": settings.smtp.require_tls}
    return await loop.create_server(
        lambda: IntakeSMTP(handler, settings, **tls), host=host, port=port
    )


def _printable(address: str) -> str:
    return "".join(c for c in address if c.isprintable())[:320]
