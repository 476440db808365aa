"""What each agent command does to a ticket (the commands are parsed in ``agent_commands``).

Every action has the same shape: it gets the message context, the command and the list of
canned texts being collected, changes the ticket, writes an event naming the agent, and
returns "" or what was wrong (told back to the agent).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import jinja2

from postdesk.daemon.agents import assignment, habits, merge, release
from postdesk.daemon.agents.commands import Command
from postdesk.daemon.classify import labels as teaching
from postdesk.daemon.classify.loader import cache_for
from postdesk.daemon.config import Settings
from postdesk.daemon.outbound.compose import envelope_address
from postdesk.daemon.outbound.context import helpdesk_info, ticket_info
from postdesk.daemon.outbound.templating import CANNED_FOLDER
from postdesk.daemon.pipeline import MessageContext, add_participant, log_event
from postdesk.daemon.sla import labels as vocabulary

CANNED_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")
CATEGORY_NAME = re.compile(r"^[a-z0-9_.-]{1,64}$")

Action = Callable[[MessageContext, Command, list[str]], str]


def _event(ctx: MessageContext, kind: str, detail: dict[str, object]) -> None:
    assert ctx.agent is not None
    log_event(ctx, kind, detail, actor=ctx.agent.email)


def _teach(ctx: MessageContext, kind: str, label: str) -> None:
    """Store the agent's verdict as a label the classifier retrains from."""
    assert ctx.ticket is not None and ctx.agent is not None
    teaching.record(ctx.session, ctx.ticket, kind, label, ctx.agent.email, ctx.services.clock())


def note(ctx: MessageContext, command: Command, canned: list[str]) -> str:
    """#note: the whole reply is internal; nothing reaches the customer."""
    _event(ctx, "note", {"message_id": ctx.parsed.message_id})
    return ""


def status(ctx: MessageContext, command: Command, canned: list[str]) -> str:
    """#status S: set the status; solving it asks the customer for a rating."""
    ticket = ctx.ticket
    assert ticket is not None
    found = vocabulary.find_status(ctx.services.settings, command.argument)
    if found is None:
        known = ", ".join(vocabulary.labels(ctx.services.settings))
        return f"unknown status (one of {known}; quote or hyphenate labels of several words)"
    label, value = found
    if label != ticket.status_label:
        ticket.status_label = label
        if value == ticket.status:
            _event(ctx, "status", {"from": ticket.status, "to": value, "label": label})
    if value != ticket.status:
        _event(ctx, "status", {"from": ticket.status, "to": value})
        if value in ("solved", "closed") and ticket.status not in ("solved", "closed"):
            ticket.solved_at = ctx.services.clock()
        elif value not in ("solved", "closed"):
            ticket.solved_at = None
        ctx.solved = value == "solved"
        ticket.status = value
    return ""


def priority(ctx: MessageContext, command: Command, canned: list[str]) -> str:
    """#priority P."""
    ticket, value = ctx.ticket, command.argument.lower()
    assert ticket is not None
    levels = [p.lower() for p in ctx.services.settings.workflow.priorities]
    if value not in levels:
        return f"unknown priority (one of {', '.join(levels)})"
    if value != ticket.priority:
        _event(ctx, "priority", {"from": ticket.priority, "to": value})
        ticket.priority = value
    return ""


def assign(ctx: MessageContext, command: Command, canned: list[str]) -> str:
    """#assign me|nobody|<agent email or name>."""
    assert ctx.ticket is not None and ctx.agent is not None
    wanted = command.argument.lower()
    if wanted in ("nobody", "none"):
        chosen: str | None = None
    elif wanted == "me":
        chosen = ctx.agent.email.lower()
    else:
        found = [
            a
            for a in ctx.services.settings.agents
            if wanted in (a.email.lower(), a.name.lower(), a.email.lower().partition("@")[0])
        ]
        if len(found) != 1:
            return "no such agent" if not found else "more than one agent has that name"
        chosen = found[0].email.lower()
    ctx.ticket.assignee = chosen
    _event(ctx, "assigned", {"assignee": chosen, "how": "#assign"})
    return ""


def category(ctx: MessageContext, command: Command, canned: list[str]) -> str:
    """#category C: set the category, its group, and the group's next agent if it takes turns.

    C is matched without regard to case against the categories known (``[routing]
    categories`` and the category model's labels, which may hold spaces: "Technical Support");
    with none known, any word of letters, digits, '.', '_' or '-' is taken."""
    ticket, settings = ctx.ticket, ctx.services.settings
    assert ticket is not None
    known = categories_known(settings)
    value = known.get(command.argument.lower(), "")
    if not value and known:
        return f"unknown category (known: {', '.join(sorted(known.values(), key=str.lower))})"
    if not known:
        value = command.argument.lower()
        if not CATEGORY_NAME.match(value):
            return "a category is one word of letters, digits, '.', '_' or '-'"
    ticket.category = value
    ticket.group_name = assignment.group_of(settings, value) or ticket.group_name
    _event(ctx, "category", {"category": value, "group": ticket.group_name})
    _teach(ctx, teaching.CATEGORY_KIND, value)
    if assignment.assign_in_turn(ctx.session, settings, ticket) is not None:
        detail = {"assignee": ticket.assignee, "how": f"round-robin in {ticket.group_name}"}
        log_event(ctx, "assigned", detail, actor=assignment.SYSTEM_ACTOR)
    return ""


def categories_known(settings: Settings) -> dict[str, str]:
    """Lower-cased name -> name of every category in ``[routing] categories`` and the model."""
    model = cache_for(settings.data_dir).get("category")
    names = [*settings.routing.categories, *(model.classes if model is not None else [])]
    return {name.lower(): name for name in reversed(names)}


def spam(ctx: MessageContext, command: Command, canned: list[str]) -> str:
    """#spam: mark the ticket as spam and close it; nothing is sent to the sender."""
    assert ctx.ticket is not None
    ctx.ticket.spam, ctx.ticket.status = True, "closed"
    _event(ctx, "spam", {})
    _teach(ctx, teaching.SPAM_KIND, "spam")
    return ""


def ham(ctx: MessageContext, command: Command, canned: list[str]) -> str:
    """#ham: the ticket is not spam; a ticket closed as spam opens again (and, if it was held
    unanswered, is acknowledged and notified now)."""
    assert ctx.ticket is not None
    held = bool(ctx.ticket.spam)
    if ctx.ticket.spam and ctx.ticket.status == "closed":
        ctx.ticket.status = "open"
    ctx.ticket.spam = False
    _event(ctx, "ham", {})
    _teach(ctx, teaching.SPAM_KIND, "ham")
    if held:
        release.release(ctx)
    return ""


def cc(ctx: MessageContext, command: Command, canned: list[str]) -> str:
    """#cc ADDRESS: add a collaborator who gets the agents' replies and may write in."""
    assert ctx.ticket is not None
    try:
        address = envelope_address(command.argument)
    except ValueError:
        return "not an email address"
    settings = ctx.services.settings
    if address in settings.helpdesk.addresses or settings.agent(address) is not None:
        return "helpdesk and agent addresses cannot be collaborators"
    add_participant(ctx, ctx.ticket, address, "cc")
    _event(ctx, "cc", {"added": address})
    return ""


def merge_into(ctx: MessageContext, command: Command, canned: list[str]) -> str:
    """#merge N: move this ticket's messages and participants into N and close this one."""
    assert ctx.ticket is not None and ctx.agent is not None
    number = command.argument.removeprefix("#")
    if not number.isdigit():
        return "expected a ticket number"
    error: str
    target, error = merge.merge(
        ctx.session, ctx.ticket, int(number), ctx.agent.email, ctx.services.clock()
    )
    if target is not None:
        ctx.ticket = target
    return error


def reply(ctx: MessageContext, command: Command, canned: list[str]) -> str:
    """#reply NAME: add the canned reply templates/canned/NAME.txt.j2 to the relayed text."""
    assert ctx.ticket is not None and ctx.agent is not None
    name = command.argument.lower()
    if not CANNED_NAME.match(name):
        return "a canned reply name is letters, digits, '_' or '-'"
    environment = ctx.services.templates.environment
    try:
        template = environment.get_template(f"{CANNED_FOLDER}/{name}.txt.j2")
    except jinja2.TemplateNotFound:
        return f"no canned reply {name!r} (available: {', '.join(canned_names(ctx))})"
    settings = ctx.services.settings
    context = {
        "helpdesk": helpdesk_info(settings),
        "ticket": ticket_info(settings, ctx.ticket),
        "agent": {"name": ctx.agent.name or ctx.agent.email, "email": ctx.agent.email},
    }
    try:
        canned.append(template.render(context).strip("\n"))
    except jinja2.TemplateError as exc:
        return f"canned reply {name!r} could not be rendered: {type(exc).__name__}"
    _event(ctx, "canned_reply", {"name": name})
    return ""


def canned_names(ctx: MessageContext) -> list[str]:
    """The canned replies available, by name."""
    prefix, suffix = f"{CANNED_FOLDER}/", ".txt.j2"
    names = ctx.services.templates.environment.list_templates()
    return sorted(
        n[len(prefix) : -len(suffix)] for n in names if n.startswith(prefix) and n.endswith(suffix)
    )


ACTIONS: dict[str, Action] = {
    "note": note,
    "status": status,
    "priority": priority,
    "assign": assign,
    "category": category,
    "spam": spam,
    "ham": ham,
    "cc": cc,
    "merge": merge_into,
    "reply": reply,
    "requester": habits.requester,
    "assist": habits.assist,
    "unassist": habits.unassist,
}
