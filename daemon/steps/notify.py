"""Step: tell the agents about a new ticket or a customer's reply, and alert them to forgeries.

One mail per agent, so the token in each Message-ID is bound to the ticket and to that agent:
replying to it authenticates the agent (see ``steps.authenticate``). Who is told: the assignee,
else the agents of the ticket's group, else every agent. Mail from an agent's address that is
not authenticated goes to every agent as an alert instead. Copies are stored as internal
messages of the ticket.
"""

from __future__ import annotations

from datetime import timedelta

from postdesk.daemon.agents import assignment
from postdesk.daemon.config import Agent
from postdesk.daemon.outbound.context import attachment_list, helpdesk_info, ticket_info, trimmed
from postdesk.daemon.outbound.held import HOLD_MARGIN_SECONDS
from postdesk.daemon.outbound.outbox import Mail
from postdesk.daemon.outbound.templating import AGENT_ALERT, AGENT_NOTIFICATION, Rendered
from postdesk.daemon.pipeline import MessageContext
from postdesk.daemon.store.slaview import due_line, due_text


def run(ctx: MessageContext) -> None:
    """Have the notifications, or the alert, this message calls for queued."""
    ticket = ctx.ticket
    if ticket is None or ctx.agent is not None or ctx.rating is not None:
        return
    settings = ctx.services.settings
    if ctx.unverified_agent:
        shared = _shared(ctx, {"reason": ctx.auth_detail}, attach_budget=0)
        mails = [_mail(ctx, agent, AGENT_ALERT, *shared) for agent in settings.agents]
    elif ctx.is_auto or ticket.spam:
        return
    else:
        event = "new" if ctx.created else "reopened" if ctx.reopened else "reply"
        budget = settings.outbound.notify_attach_max_bytes
        shared = _shared(ctx, {"event": event}, attach_budget=budget)
        rendered: Rendered | None = None  # the same for every agent unless it says "agent"
        per_agent = ctx.services.templates.uses(AGENT_NOTIFICATION, "agent")
        mails = []
        for agent in assignment.recipients(settings, ticket, opened_now=ctx.created):
            mail = _mail(ctx, agent, AGENT_NOTIFICATION, *shared, None if per_agent else rendered)
            rendered = mail.rendered
            mails.append(mail)
    ctx.mails.extend(mails)  # queued together (steps.enqueue)


def _shared(
    ctx: MessageContext, extra: dict[str, object], attach_budget: int
) -> tuple[dict[str, object], list[tuple[str, str, bytes]]]:
    """What every agent's mail about this message says, built once: the template context but
    the agent, and the files that fit in ``attach_budget`` bytes."""
    assert ctx.ticket is not None
    settings = ctx.services.settings
    parsed = ctx.parsed
    described, attached = attachment_list(parsed.attachments, attach_budget)
    sla_due = due_text(ctx.sla, ctx.ticket) if ctx.sla else due_line(ctx.session, ctx.ticket)
    context: dict[str, object] = {
        "helpdesk": helpdesk_info(settings),
        "ticket": ticket_info(settings, ctx.ticket),
        "author": {"email": ctx.sender, "name": parsed.from_name},
        "subject": parsed.subject,
        "text": trimmed(parsed.new_text),
        "attachments": described,
        "notes": list(ctx.notes),
        "plugin_facts": ctx.facts,  # contact, orders: see steps/facts.py
        "sla_due": sla_due,
        **extra,
    }
    return context, attached


def _mail(
    ctx: MessageContext,
    agent: Agent,
    template: str,
    shared: dict[str, object],
    attached: list[tuple[str, str, bytes]],
    rendered: Rendered | None = None,
) -> Mail:
    """The mail about this message to ``agent``: its text, its files up to the budget.

    ``rendered``, when given, is the template already rendered for another agent (the caller
    knows it does not depend on the agent). While the plugins' lookups still run
    (``ctx.held``), the mail is held for them (see ``steps.facts`` and ``steps.enqueue``)."""
    parsed = ctx.parsed
    context = {**shared, "agent": {"name": agent.name or agent.email, "email": agent.email}}
    if rendered is None:
        rendered = ctx.services.templates.render(template, context)
    held_until = None
    if ctx.held is not None:
        hold = ctx.services.plugins.lookup_wait() + HOLD_MARGIN_SECONDS
        held_until = ctx.services.clock() + timedelta(seconds=hold)
    return Mail(
        kind=template.rpartition("/")[2],
        to=[agent.email],
        template=template,
        context=context,
        in_reply_to=parsed.message_id,
        references=[*parsed.references, parsed.message_id],
        auto=True,
        agent=agent.email,
        attachments=attached,
        internal_copy=True,
        rendered=rendered,
        held_until=held_until,
    )
