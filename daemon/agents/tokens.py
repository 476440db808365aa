"""HMAC-verifiable Message-IDs: how the helpdesk recognises replies to its own mail.

A Message-ID we mint looks like ``<pd.42.c.TIME.NONCE.MAC@example.com>``: ``pd`` marks it as
ours, ``42`` is the ticket number, ``c`` says it went to a customer (or a short keyed hash of the
agent's address when it went to an agent), TIME is the minute it was minted (hex Unix minutes,
so an agent token can expire), the nonce keeps every ID unique and the MAC is an HMAC over all
of it. IDs minted before TIME existed (``pd.42.c.NONCE.MAC``) still verify, with no mint time. The domain is not covered, so a changed helpdesk address keeps old
threads working; the secret is what makes an ID ours.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from postdesk.daemon.config import ConfigError, Settings, secret_value
from postdesk.models.schema import KeyValue

log = logging.getLogger("postdesk.tokens")

PREFIX = "pd"
CUSTOMER = "c"
SECRET_KEY = "hmac_secret"
# Sized so that "Message-ID: <pd.N.A.NONCE.MAC@example.com>" fits in one 78-character line.
AGENT_KEY_CHARS = 8
NONCE_BYTES = 4
LEGACY_NONCE_BYTES = 5
TIME_CHARS = 7  # hex Unix minutes: enough until the year 2480
MAC_CHARS = 20  # 80 bits: forging needs that many guesses against the live helpdesk
MAX_TICKET_DIGITS = 18
AGENT_KEYS_KEPT = 1024  # agent keys remembered per Tokens: the agents, not every address seen
_ID_PATTERN = re.compile(
    rf"^{PREFIX}\.([0-9]{{1,{MAX_TICKET_DIGITS}}})\.({CUSTOMER}|[0-9a-f]{{{AGENT_KEY_CHARS}}})"
    rf"\.((?:[0-9a-f]{{{TIME_CHARS}}}\.)?)([0-9a-f]{{{NONCE_BYTES * 2}}}|[0-9a-f]{{{LEGACY_NONCE_BYTES * 2}}})"
    rf"\.([0-9a-f]{{{MAC_CHARS}}})@[^@<>\s]+$"
)


@dataclass(frozen=True)
class Token:
    """What a verified Message-ID of ours says: the ticket, and the agent it was sent to."""

    ticket_number: int
    agent_key: str | None  # None for mail addressed to customers
    # Unix time (to the minute); None for IDs minted before it. Not part of equality.
    minted_at: float | None = field(default=None, compare=False)


class Tokens:
    """Mints and verifies Message-IDs signed with the helpdesk secret."""

    def __init__(self, secret: bytes, domain: str) -> None:
        """Use ``secret`` (non-empty) for every MAC and ``domain`` for minted Message-IDs."""
        if not secret:
            raise ValueError("the HMAC secret must not be empty")
        self._secret = secret
        self._domain = domain or "localhost"
        # keyed once: every MAC copies this state instead of hashing the key again
        self._message_id_mac = hmac.new(secret, b"message-id\0", hashlib.sha256)
        self._agent_keys: dict[str, str] = {}  # address as given -> agent_key (few agents)

    def mint(self, ticket_number: int, agent: str | None = None, now: float | None = None) -> str:
        """A fresh Message-ID "<pd.N.A.TIME.NONCE.MAC@domain>"; A = agent_key(agent) or "c"."""
        if ticket_number < 0:
            raise ValueError("ticket numbers are not negative")
        audience = self.agent_key(agent) if agent else CUSTOMER
        minute = int((time.time() if now is None else now) // 60)
        nonce = secrets.token_hex(NONCE_BYTES)
        body = f"{PREFIX}.{ticket_number}.{audience}.{minute:0{TIME_CHARS}x}.{nonce}"
        return f"<{body}.{self._mac(body)}@{self._domain}>"

    def verify(self, message_id: str) -> Token | None:
        """The token carried by one of our Message-IDs, or None if forged or foreign.

        The MAC is compared in constant time.
        """
        value = message_id.strip()
        if len(value) > 998:
            return None
        if value.startswith("<") and value.endswith(">"):
            value = value[1:-1]
        match = _ID_PATTERN.match(value.lower())
        if match is None:
            return None
        number, audience, minute, nonce, mac = match.groups()
        if minute and len(nonce) != NONCE_BYTES * 2:
            return None
        body = f"{PREFIX}.{number}.{audience}.{minute}{nonce}"
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        minted = int(minute.rstrip("."), 16) * 60.0 if minute else None
        return Token(int(number), None if audience == CUSTOMER else audience, minted)

    def agent_key(self, email: str) -> str:
        """A short keyed hash of the lower-cased address (never the address itself)."""
        key = self._agent_keys.get(email)
        if key is None:
            data = b"agent\0" + email.strip().lower().encode()
            key = hmac.new(self._secret, data, hashlib.sha256).hexdigest()[:AGENT_KEY_CHARS]
            if len(self._agent_keys) < AGENT_KEYS_KEPT:
                self._agent_keys[email] = key
        return key

    def is_ours(self, message_id: str) -> bool:
        """True when ``message_id`` was minted with our secret."""
        return self.verify(message_id) is not None

    def _mac(self, body: str) -> str:
        digest = self._message_id_mac.copy()
        digest.update(body.encode())
        return digest.hexdigest()[:MAC_CHARS]


def load_secret(session: Session, settings: Settings) -> bytes:
    """Configured secret (helpdesk.secret / secret_env) or the one stored in the kv table under
    'hmac_secret', created once (insert that tolerates a concurrent insert by another daemon).

    Call it inside a transaction that commits, so every daemon on the database agrees.
    """
    helpdesk = settings.helpdesk
    configured: str = secret_value(helpdesk.secret, helpdesk.secret_env, "helpdesk.secret")
    if configured:
        return configured.encode()
    stored = session.get(KeyValue, SECRET_KEY)
    if stored is None:
        try:
            with session.begin_nested():
                session.add(KeyValue(key=SECRET_KEY, value=secrets.token_hex(32)))
            log.info("created a new HMAC secret in the database")
        except IntegrityError:
            log.info("another daemon created the HMAC secret first; using theirs")
        stored = session.scalars(
            select(KeyValue)
            .where(KeyValue.key == SECRET_KEY)
            .execution_options(populate_existing=True)
        ).one()
    value: str = stored.value
    if not value:
        raise ConfigError(f"kv table: {SECRET_KEY!r} is empty; delete the row to recreate it")
    return value.encode()
