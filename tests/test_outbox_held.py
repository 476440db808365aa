"""Held outbox rows (``daemon/outbound/held.py``): not sent before their time, completed once,
and sent as they are when nobody completes them (a worker died after its commit)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from postdesk.daemon.outbound.held import HeldMail, complete
from postdesk.daemon.outbound.outbox import enqueue
from postdesk.daemon.outbound.templating import CUSTOMER_ACKNOWLEDGEMENT, Rendered
from postdesk.daemon.steps.facts import _completion
from postdesk.daemon.store.db import transaction
from postdesk.models.schema import Message, OutboxItem, Ticket, utcnow
from tests.support import SmtpSink
from tests.test_outbox_sender import CUSTOMER, HELPDESK, Env, drain, env

__all__ = ["env"]  # the fixture
CONTEXT = {
    "helpdesk": {"name": "Example Support", "address": HELPDESK},
    "ticket": {"number": 1, "subject": "Printer on fire", "tag": "[Example #1]"},
}


def _held(env: Env) -> HeldMail:
    """Queue a mail held for an hour and commit; what completing it takes."""
    with transaction(env.factory) as session:
        ticket = Ticket(number=1, subject="Printer on fire", requester=CUSTOMER)
        session.add(ticket)
        item = enqueue(
            session,
            env.services,
            ticket=ticket,
            kind="acknowledgement",
            to=[CUSTOMER],
            template=CUSTOMER_ACKNOWLEDGEMENT,
            context=CONTEXT,
            in_reply_to="<in-1@example.org>",
            references=["<in-1@example.org>"],
            auto=True,
            internal_copy=True,
            held_until=utcnow() + timedelta(hours=1),
        )
    assert item is not None
    return HeldMail(
        item.id,
        item.message_id,
        CUSTOMER_ACKNOWLEDGEMENT,
        CONTEXT,
        [CUSTOMER],
        "<in-1@example.org>",
        ["<in-1@example.org>"],
        [],
    )


def _complete(env: Env, mail: HeldMail, name: str) -> bool:
    changes = {"helpdesk": {"name": name, "address": HELPDESK}}
    with transaction(env.factory) as session:
        return complete(session, env.services, mail, changes)


def _text(env: Env, sink: SmtpSink) -> tuple[str, str]:
    """The text of the one mail sent, and of the ticket's copy."""
    [(_envelope, sent)] = sink.received
    body = sent.get_body(preferencelist=("plain",))
    assert body is not None
    with env.factory() as session:
        copy = session.scalars(select(Message.text)).one()
    return str(body.get_content()), copy


def test_a_completed_held_mail_goes_out_once_with_the_new_text(env: Env, sink: SmtpSink) -> None:
    env = env.relay_to(sink.port)
    mail = _held(env)
    assert drain(env) == 0 and not sink.received, "held: not sent before its time"
    assert _complete(env, mail, "Acme Care")
    assert not _complete(env, mail, "Someone Else"), "released once"
    assert drain(env) == 1
    sent, copy = _text(env, sink)
    assert "Acme Care" in sent and "Acme Care" in copy and "Someone Else" not in sent
    assert drain(env) == 0


def test_a_held_mail_nobody_completes_goes_out_as_it_is(env: Env, sink: SmtpSink) -> None:
    env = env.relay_to(sink.port)
    mail = _held(env)
    with transaction(env.factory) as session:  # the hold's time is up
        session.execute(update(OutboxItem).values(next_attempt_at=utcnow()))
    assert drain(env) == 1
    assert not _complete(env, mail, "Acme Care"), "sent already: never rewritten"
    assert drain(env) == 0
    sent, copy = _text(env, sink)
    assert "Example Support" in sent and "Acme Care" not in sent + copy


def _renders(env: Env, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record each template rendering from now on: whether a write transaction was open."""
    renders: list[bool] = []
    render = env.services.templates.render

    def recorded(name: str, context: Mapping[str, object]) -> Rendered:
        # another writer, which SQLite refuses at once while a write transaction is open
        probe = sqlite3.connect(str(env.engine.url.database), timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            renders.append(False)
        except sqlite3.OperationalError:
            renders.append(True)
        finally:
            probe.close()
        return render(name, context)

    monkeypatch.setattr(env.services.templates, "render", recorded)
    return renders


def test_held_mail_completed_with_facts_is_rendered_before_the_transaction_that_releases_it(
    env: Env, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The completion of ``steps/facts.py``: the mail is rendered in the thread that hands the
    facts over, outside any transaction, so that the release holds SQLite's one write lock
    (which the worker needs for every batch) only for its UPDATEs. Only when the contact may
    raise a new ticket's priority is it rendered inside, where the raised ticket is read."""
    if not env.url.startswith("sqlite"):
        pytest.skip("the write lock probed is SQLite's")
    env = env.relay_to(sink.port)
    mail = _held(env)
    with env.factory() as session:
        ticket_id = session.scalars(select(Ticket.id)).one()
    renders = _renders(env, monkeypatch)
    write = _completion(env.services, ticket_id, True, [mail], {"orders": [{"number": "A1"}]})
    assert renders == [False], "rendered at once, outside a transaction"
    env.services.releases.write(env.engine, write)
    assert renders == [False], "nothing rendered while the write lock is held"
    assert drain(env) == 1

    raised = {"contact": {"name": "Carol", "tier": "gold", "priority": "high"}}
    write = _completion(env.services, ticket_id, True, [mail], raised)
    assert renders == [False], "to be rendered with the ticket as the transaction reads it"
    env.services.releases.write(env.engine, write)
    assert renders == [False, True]
    with env.factory() as session:
        assert session.get_one(Ticket, ticket_id).priority == "high"
