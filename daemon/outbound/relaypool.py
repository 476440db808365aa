"""Persistent SMTP connections to the relay, several at a time, reused from mail to mail.

Opening a connection (TCP, EHLO, STARTTLS, AUTH) costs more than sending a small mail over
one that is open. The pool keeps up to ``outbound.connections`` open clients; a sender takes one
for each mail and gives it back. A client the relay closed while it sat idle is noticed on the
next use: that mail is sent once more over a fresh connection, because nothing of it reached
the relay. aiosmtplib resets the SMTP session (RSET) after a refused mail.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import aiosmtplib

from postdesk.daemon.config import OutboundSettings, secret_value

SMTP_TIMEOUT_SECONDS = 30.0
# Errors by which a connection that sat idle shows that the relay closed it.
STALE = (aiosmtplib.SMTPServerDisconnected, ConnectionError)


class RelayPool:
    """Up to ``outbound.connections`` reusable connections to ``outbound.relay``."""

    def __init__(self, outbound: OutboundSettings) -> None:
        """Connect lazily, on first use, to the relay named in ``outbound``."""
        url = urlsplit(outbound.relay)
        if not url.hostname:
            raise RuntimeError(f"outbound.relay has no host: {outbound.relay!r}")
        self._outbound = outbound
        self._host = url.hostname
        self._secure = url.scheme == "smtps"
        self._port = url.port or (465 if self._secure else 25)
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(max(1, outbound.connections))

    async def send(
        self, raw: bytes, sender: str, recipients: list[str]
    ) -> dict[str, aiosmtplib.SMTPResponse]:
        """Send one mail over a pooled connection; the refused recipients, as aiosmtplib gives.

        Raises what aiosmtplib raises; the connection is dropped after any error other than
        a refusal the relay answered.
        """
        async with self._slots:
            client, reused = await self._take()
            try:
                refused, _reply = await client.sendmail(sender, recipients, raw)
            except STALE:
                client.close()
                if not reused:
                    raise
                client = await self._connect()  # the idle one was closed by the relay
                try:
                    refused, _reply = await client.sendmail(sender, recipients, raw)
                except BaseException:
                    client.close()
                    raise
            except aiosmtplib.SMTPResponseException:
                self._keep(client)  # a reply: the session is reset and usable
                raise
            except aiosmtplib.SMTPRecipientsRefused:
                self._keep(client)
                raise
            except BaseException:
                client.close()
                raise
            self._keep(client)
            return dict(refused)

    async def close(self) -> None:
        """Say QUIT on every idle connection and forget them."""
        idle, self._idle = self._idle, []
        for client in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), 5)
            client.close()

    async def _take(self) -> tuple[aiosmtplib.SMTP, bool]:
        """An idle connected client (reused) or a fresh one."""
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client, True
        return await self._connect(), False

    def _keep(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            self._idle.append(client)

    async def _connect(self) -> aiosmtplib.SMTP:
        """A new client: connected, greeted, secured and logged in as configured."""
        outbound = self._outbound
        password = secret_value(outbound.password, outbound.password_env, "outbound.password")
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            timeout=SMTP_TIMEOUT_SECONDS,
            use_tls=self._secure,
            start_tls=False if self._secure else None,  # None: STARTTLS when the server offers it
            username=outbound.username or None,
            password=(password or None) if outbound.username else None,
        )
        await client.connect()
        return client
