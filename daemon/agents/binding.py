"""How far an agent's HMAC token is believed (issue 13): in time, in scope, and not against a
trusted verdict that the mail is forged.

A token is the Message-ID of the agent's notification. It travels in the In-Reply-To of the
agent's reply, but also to whoever the agent copies or forwards the thread to, so it is a
bearer credential: it must expire (``auth.token_max_age_days``), authorise commands only on
its own ticket, and yield to trusted Authentication-Results that say DKIM/SPF failed.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from postdesk.daemon.agents import authresults
from postdesk.daemon.agents.tokens import Token
from postdesk.models.schema import Ticket

DAY_SECONDS = 86_400.0
MAX_MERGE_HOPS = 10
FAILED = {"fail", "permerror"}


def age_refusal(token: Token, now: float, max_age_days: float) -> str:
    """Why the token is too old to authenticate, or "" while it may."""
    if token.minted_at is None:
        return f"token for ticket #{token.ticket_number} has no mint time (issued before expiry)"
    age_days = (now - token.minted_at) / DAY_SECONDS
    if age_days > max_age_days:
        return (
            f"token for ticket #{token.ticket_number} expired: minted {age_days:.0f} days ago "
            f"(auth.token_max_age_days = {max_age_days:g})"
        )
    return ""


def forged_verdict(results: authresults.AuthResults | None, domain: str) -> str:
    """The trusted verdict that the mail is not from ``domain``, or "" when there is none.

    A passing aligned method wins (the mail is authentic); otherwise an aligned DKIM, SPF or
    DMARC failure is a verdict of forgery.
    """
    if results is None or authresults.vouches_for(results, domain) is not None:
        return ""
    for item in results.results:
        if item.result not in FAILED:
            continue
        props = item.properties
        if item.method == "dkim":
            subject = props.get("header.d", "")
        elif item.method == "spf":
            subject = props.get("smtp.mailfrom", "").rpartition("@")[2]
        elif item.method == "dmarc":
            subject = props.get("header.from", "")
        else:
            continue
        if authresults.aligned(subject, domain):
            return f"{results.authserv_id} says {item.method}={item.result} for {domain}"
    return ""


def covers(session: Session, token_ticket: int, ticket: Ticket) -> bool:
    """True when ``ticket`` is the token's ticket, or the ticket it was merged into."""
    number: int | None = token_ticket
    for _ in range(MAX_MERGE_HOPS):
        if number is None:
            return False
        if number == ticket.number:
            return True
        number = session.scalar(select(Ticket.merged_into).where(Ticket.number == number))
    return False


# Commands that reach beyond the ticket the token was issued for.
BEYOND_THE_TICKET = frozenset({"merge"})


def command_refusal(token_ticket: int | None, command_name: str) -> str:
    """Why a command may not run on this authentication, or "" when it may."""
    if token_ticket is not None and command_name in BEYOND_THE_TICKET:
        return (
            f"#{command_name} touches another ticket and needs Authentication-Results "
            "authentication, not only a reply token"
        )
    return ""
