"""Step: decide whether mail from an agent's address really comes from that agent (SPEC 5).

Believed are: a helpdesk HMAC token addressed to that agent in In-Reply-To/References (younger
than ``auth.token_max_age_days`` and not contradicted by trusted Authentication-Results saying
DKIM/SPF failed for the agent's domain; it covers its own ticket only, see
``daemon/agents/binding.py`` and the ``scope`` step), or the
topmost Authentication-Results header from a trusted authserv-id with DKIM or SPF pass aligned to
the From domain (or DMARC pass for it). That header is only read when the mail came through a
border we trust: over SMTP from a peer in ``auth.trusted_relays``, from an IMAP mailbox (the
provider's MTA wrote it), or from ``postdesk ingest``. Anything else from an agent's address is
handled as customer mail, and the agents are alerted (by the notify step).
"""

from __future__ import annotations

import ipaddress
import logging

from postdesk.daemon.agents import authresults, binding
from postdesk.daemon.agents.tokens import Token
from postdesk.daemon.config import Agent
from postdesk.daemon.pipeline import MessageContext

log = logging.getLogger("postdesk.auth")

TRUSTED_CHANNELS = ("imap:", "ingest")


def run(ctx: MessageContext) -> None:
    """Set ``ctx.agent`` for authenticated agent mail, ``ctx.unverified_agent`` otherwise."""
    agent = ctx.services.settings.agent(ctx.sender)
    if agent is None:
        return
    token, refusal = by_token(ctx, agent)
    verified, detail = by_auth_results(ctx)
    if token is not None and not verified:  # a token alone: its own ticket only
        ctx.agent, ctx.token_ticket = agent, token.ticket_number
        ctx.auth_detail = f"token for ticket #{token.ticket_number}"
        return
    if refusal and not verified:
        detail = f"{refusal}; {detail}"
    ctx.auth_detail = detail
    if verified:
        ctx.agent = agent
        return
    ctx.unverified_agent = True
    ctx.notes.append(f"unverified mail from agent address {agent.email}: {detail}")
    log.warning(
        "%s from agent address %s not believed: %s", ctx.parsed.message_id, agent.email, detail
    )


def by_token(ctx: MessageContext, agent: Agent) -> tuple[Token | None, str]:
    """Our believable token for this agent in In-Reply-To/References, else why none is."""
    tokens = ctx.services.tokens
    wanted = tokens.agent_key(agent.email)
    auth = ctx.services.settings.auth
    now = ctx.services.clock().timestamp()
    refusal = ""
    for message_id in [*ctx.parsed.in_reply_to, *ctx.parsed.references]:
        token = tokens.verify(message_id)
        if token is None or token.agent_key != wanted:
            continue
        refusal = binding.age_refusal(
            token, now, auth.token_max_age_days
        ) or binding.forged_verdict(trusted_results(ctx), agent.email.rpartition("@")[2].lower())
        if not refusal:
            return token, ""
    return None, refusal


def trusted_results(ctx: MessageContext) -> authresults.AuthResults | None:
    """The topmost Authentication-Results from a trusted authserv-id, read only from a trusted
    border; None otherwise."""
    headers = ctx.parsed.header_all("authentication-results")
    if not headers or not border_is_trusted(ctx):
        return None
    return authresults.first_trusted(headers, ctx.services.settings.auth.trusted_authserv_ids)


def by_auth_results(ctx: MessageContext) -> tuple[bool, str]:
    """Whether a believable Authentication-Results header vouches for the sender, and why."""
    auth = ctx.services.settings.auth
    headers = ctx.parsed.header_all("authentication-results")
    if not headers:
        return False, "no Authentication-Results and no token addressed to this agent"
    if not border_is_trusted(ctx):
        peer = ctx.envelope.peer or "unknown"
        return False, f"Authentication-Results not believed from SMTP peer {peer}"
    results = authresults.first_trusted(headers, auth.trusted_authserv_ids)
    if results is None:
        return False, "no Authentication-Results from a trusted authserv-id"
    method = authresults.vouches_for(results, ctx.sender.rpartition("@")[2])
    if method is None:
        return False, f"{results.authserv_id}: no DKIM, SPF or DMARC pass aligned with From"
    return True, f"{method} pass from {results.authserv_id}"


def border_is_trusted(ctx: MessageContext) -> bool:
    """True when whoever handed us this mail wrote (or checked) its Authentication-Results."""
    envelope = ctx.envelope
    if envelope.channel.startswith(TRUSTED_CHANNELS):
        return True
    if envelope.channel != "smtp":
        return False
    try:
        peer = ipaddress.ip_address(envelope.peer)
    except ValueError:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    relays = ctx.services.settings.auth.trusted_relays
    return any(peer in ipaddress.ip_network(relay, strict=False) for relay in relays)
