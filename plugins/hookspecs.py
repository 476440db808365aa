"""Every hook a postdesk plugin may implement, grouped by when postdesk calls it.

Implementations may be plain functions or ``async def``; each call has a timeout
(``plugins.timeout_seconds``, lookups ``plugins.lookup_timeout_seconds``; a plugin's table
may set its own ``event_timeout_seconds`` and ``lookup_timeout_seconds``). A plugin that
raises or times out is logged, counted and skipped: it never loses or delays mail. An
implementation may accept fewer arguments than the spec names (pluggy passes only those it
asks for). ``ticket`` and ``message`` are read-only snapshots
(:mod:`postdesk.plugins.snapshots`) with the fields of ``postdesk ticket N --json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from postdesk.plugins import hookspec
from postdesk.plugins.snapshots import Snapshot

# --- Events: called after the transaction that caused them has committed -------------------


@hookspec
def postdesk_ticket_created(ticket: Snapshot, event_id: str) -> None:
    """A new ticket was stored.

    :param ticket: the new ticket (no messages; the first one follows in
        ``postdesk_message_added``).
    :param event_id: this event's idempotency key: the same when postdesk runs the call again
        after its process died in the middle (R-17), so a plugin can skip what it already did.
    :returns: nothing; answers are ignored.

    Called once per new ticket, after the worker committed it. Every implementation is
    called, concurrently.
    """


@hookspec
def postdesk_message_added(ticket: Snapshot, message: Snapshot, event_id: str) -> None:
    """A message was stored in a ticket: a customer's mail, or an agent's reply.

    :param ticket: the ticket the message belongs to, as it is after the message.
    :param message: the stored inbound message (``direction`` is ``"in"``).
    :param event_id: this event's idempotency key: the same when postdesk runs the call again
        after its process died in the middle (R-17), so a plugin can skip what it already did.
    :returns: nothing; answers are ignored.

    Called after commit for every stored inbound message (duplicates and discarded mail are
    not stored and cause no call). Every implementation is called, concurrently.
    """


@hookspec
def postdesk_ticket_updated(
    ticket: Snapshot, changes: Mapping[str, tuple[Any, Any]], event_id: str
) -> None:
    """A ticket's status, priority, assignee or category changed.

    :param ticket: the ticket as it is after the change.
    :param changes: field name -> ``(old, new)`` for each of ``status``, ``priority``,
        ``assignee``, ``category`` that changed while one message was processed.
    :param event_id: this event's idempotency key: the same when postdesk runs the call again
        after its process died in the middle (R-17), so a plugin can skip what it already did.
    :returns: nothing; answers are ignored.

    Called after commit, once per processed message that changed an existing ticket (a new
    ticket causes ``postdesk_ticket_created`` instead). Every implementation is called.
    """


@hookspec
def postdesk_notify(
    event: str, ticket: Snapshot | None, detail: Mapping[str, Any], event_id: str
) -> None:
    """Something people should hear about happened: deliver it (webhook, chat, mail...).

    :param event: what happened: ``ticket.created``, ``ticket.updated``, ``ticket.assigned``,
        ``message.added``, ``alert.spoofed_agent``, ``alert.imap_oversize``,
        ``alert.quarantined``, ``alert.relay_refused``; later ``sla.warning``,
        ``sla.breached``.
    :param ticket: the ticket concerned, or None for alerts about no ticket.
    :param detail: event-specific facts (read-only), e.g. ``reason`` for alerts.
    :param event_id: this event's idempotency key: the same when postdesk runs the call again
        after its process died in the middle (R-17), so a plugin can skip what it already did.
    :returns: nothing; answers are ignored.

    Called after commit (alerts: when they are raised, besides the mail they send). Every
    implementation is called, concurrently.
    """


# --- Lookups: called while a message is processed, before the agents are notified ---------


@hookspec
def postdesk_lookup_contact(email: str) -> Mapping[str, Any] | None:
    """What the CRM knows about the person writing to us.

    :param email: the sender's address, lower-cased.
    :returns: a record such as ``{"name", "organization", "tier", "phone"}``, or None when
        this plugin does not know the address.

    Called for each customer message that notifies agents. The first non-None answer in
    plugin order wins; it appears as ``plugin_facts.contact`` in the agent notification.
    """


@hookspec
def postdesk_lookup_orders(email: str, text: str) -> Sequence[Mapping[str, Any]] | None:
    """The orders a message mentions or its sender owns.

    :param email: the sender's address, lower-cased.
    :param text: the subject and new text of the message.
    :returns: a list of orders (e.g. ``{"number", "status", "total", "url"}``), or None.

    Called with ``postdesk_lookup_contact``. Every answer is collected, in plugin order, and
    the lists are joined; they appear as ``plugin_facts.orders`` in the agent notification.
    """


# --- Outgoing mail ------------------------------------------------------------------------


@hookspec
def postdesk_template_variables(template: str, ticket: Snapshot | None) -> Mapping[str, Any] | None:
    """Variables to add to an outgoing mail's template context.

    :param template: the template name, e.g. ``customer/acknowledgement``.
    :param ticket: the ticket the mail is about (the fields templates see as ``ticket``).
    :returns: a mapping of variable names to values, or None.

    Called while a mail is rendered, inside the message's transaction: answer quickly (a
    slow answer is cut off by the timeout and the mail goes out without it). The answers are
    merged in plugin order (earlier plugins win) and offered to templates as ``plugins``,
    e.g. ``{{ plugins.loyalty_points }}``.
    """
