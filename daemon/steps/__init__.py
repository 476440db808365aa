"""The pipeline's steps, and the order every inbound message passes through them.

Each step is a module with one function ``run(ctx: MessageContext) -> None``.
"""

from postdesk.daemon.pipeline import Step
from postdesk.daemon.steps import (
    authenticate,
    bounce,
    classify,
    commands,
    dedupe,
    enqueue,
    events,
    facts,
    flood,
    lookup,
    notify,
    parse,
    rating,
    relay,
    respond,
    route,
    scope,
    screen,
    sla,
    store,
    thread,
)

PIPELINE: tuple[Step, ...] = (
    parse.run,  # raw bytes -> ParsedMessage, within hard limits
    screen.run,  # loops, bounces, automatic mail
    bounce.run,  # delivery reports mark addresses bouncing; mail from them clears it
    authenticate.run,  # is mail from an agent's address really from that agent?
    classify.run,  # spam verdict and category (before any database work: no lock held)
    dedupe.run,  # the same message twice is stored once
    thread.run,  # which ticket: headers, then tag + participant, reopen window
    scope.run,  # an agent's reply token counts on its own ticket only
    flood.divert,  # over the new-ticket cap: join the sender's newest open ticket
    rating.run,  # a CSAT answer is recorded and does not reopen the ticket
    lookup.run,  # plugins' contact and order lookups start; the ticket as it was
    store.run,  # ticket (spam closed quietly, category kept), contact, message, events
    flood.settle,  # a flood's mail becomes a note; one alert to the agents
    route.run,  # a new ticket's group, and its agent when the group takes turns
    facts.run,  # the lookups' answers; a new ticket takes its contact's tier priority
    commands.run,  # an authenticated agent's #commands
    sla.run,  # policy, due times, first response met, resolution clock paused or stopped
    respond.run,  # acknowledgement of a new ticket
    notify.run,  # agents hear of new tickets and replies; alerts on forged agent mail
    enqueue.run,  # the acknowledgement and the agents' mails into the outbox, together
    relay.run,  # an agent's reply to the customers, CSAT request, command errors to the agent
    events.run,  # plugin events (created, updated, message added, alerts), fired after commit
)
