"""Step: answer a person's new ticket with an acknowledgement carrying the ticket's tag.

Automatic mail never gets an answer (RFC 3834), nor does spam; the outbox applies the per-recipient limits.
The acknowledgement is content-free (R-43): its body never repeats what the sender wrote, and its
subject repeats theirs only when the sender is verified (trusted Authentication-Results with SPF
or DMARC pass for the From domain, or an authenticated agent opening the ticket for a customer);
to anyone else it is the tag and a fixed text, so a forged From cannot relay spam through us.
"""

from __future__ import annotations

from postdesk.daemon.agents import authresults
from postdesk.daemon.outbound.context import helpdesk_info, ticket_info
from postdesk.daemon.outbound.outbox import Mail
from postdesk.daemon.outbound.templating import CUSTOMER_ACKNOWLEDGEMENT
from postdesk.daemon.pipeline import MessageContext
from postdesk.daemon.steps.authenticate import trusted_results
from postdesk.daemon.store.tags import bare_subject

VERIFYING_METHODS = frozenset({"spf", "dmarc"})


def run(ctx: MessageContext) -> None:
    """Have the acknowledgement of a new ticket opened by a person queued."""
    if not ctx.created or ctx.is_auto or ctx.ticket is None or ctx.ticket.spam:
        return
    settings, parsed = ctx.services.settings, ctx.parsed
    ticket = ticket_info(settings, ctx.ticket)
    # a misdirected reply ("Re: [Support #1] ...") opened this ticket: answer its bare subject
    verified = ctx.agent is not None or sender_verified(ctx)
    ticket["subject"] = bare_subject(settings.helpdesk.tag, ctx.ticket.subject) if verified else ""
    acknowledgement = Mail(
        kind="acknowledgement",
        to=[ctx.ticket.requester],  # the sender, or the customer named by #requester
        template=CUSTOMER_ACKNOWLEDGEMENT,
        context={"helpdesk": helpdesk_info(settings), "ticket": ticket},
        in_reply_to=parsed.message_id,
        references=[*parsed.references, parsed.message_id],
        auto=True,
        counted=ctx.counted,  # the sender's, read by the dedupe step (used if the same address)
    )
    ctx.mails.append(acknowledgement)  # queued with the agents' mails (steps.enqueue)


def sender_verified(ctx: MessageContext) -> bool:
    """True when trusted Authentication-Results carry an SPF or DMARC pass for the From domain."""
    results = trusted_results(ctx)
    if results is None:
        return False
    domain = ctx.sender.rpartition("@")[2]
    return any(
        authresults.vouches_for(authresults.AuthResults(results.authserv_id, (item,)), domain)
        in VERIFYING_METHODS
        for item in results.results
    )
