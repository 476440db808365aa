"""Outbound mail (R-29 relay faults, R-32 and R-60 header hygiene, R-40 and R-43 automatic-mail
limits and content, R-59 escaping): moved here from tests/test_compose.py and
tests/test_outbox_sender.py, whose fixtures and helpers they share."""

from __future__ import annotations

import email
import email.policy
import json
import logging

import pytest
from sqlalchemy import func, select

from postdesk.daemon.agents.tokens import Token
from postdesk.daemon.outbound.compose import SUBJECT_LIMIT
from postdesk.daemon.outbound.templating import CUSTOMER_ACKNOWLEDGEMENT
from postdesk.daemon.store.db import transaction
from postdesk.models.schema import Contact, Message, OutboxItem
from tests.support import SmtpSink, free_port
from tests.test_compose import CRLF_SUBJECT, HELPDESK, ack_context, build, make_services
from tests.test_outbox_sender import (  # the fixtures and helpers shared with that module
    CUSTOMER,
    Env,
    drain,
    env,
    outbox,
    queue,
    wait_until_due,
)

__all__ = ["env"]  # a fixture: imported so that pytest finds it here


def test_r60_headers_of_an_automatic_mail() -> None:
    services = make_services()
    message_id = services.tokens.mint(42)
    msg = build(services, message_id=message_id)
    assert msg["From"] == f"Example Support <{HELPDESK}>"
    assert msg["Reply-To"] == HELPDESK
    assert msg["To"] == "Carol <carol@example.org>"
    assert msg["Subject"] == "[Example #42] Printer on fire"
    assert msg["Date"] == "Sun, 01 Mar 2026 12:30:00 +0000"
    assert msg["Message-ID"] == message_id  # one line: readers need not unfold it
    assert services.tokens.verify(msg["Message-ID"]) == Token(42, None)
    assert msg["In-Reply-To"] == "<orig@example.org>"
    assert msg["References"] == "<orig@example.org>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Loop"] == HELPDESK
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().splitlines() == ["Hello Carol"]


def test_r60_human_reply_has_no_auto_submitted_and_agent_name() -> None:
    msg = build(auto=False, from_name="Alice via Example Support", cc=["dave@example.org"])
    assert "Auto-Submitted" not in msg
    assert msg["X-Loop"] == HELPDESK
    assert msg["From"] == f"Alice via Example Support <{HELPDESK}>"
    assert msg["Cc"] == "dave@example.org"


def test_r32_crlf_subject_attack_gives_no_bcc_and_no_exception() -> None:
    inbound = email.message_from_bytes(CRLF_SUBJECT, policy=email.policy.default)
    hostile = str(inbound["Subject"])
    assert "\r\n" in hostile or "\n" in hostile
    msg = build(subject=f"[Example #42] {hostile}")
    assert "Bcc" not in msg
    assert msg["Subject"] == "[Example #42] hi Bcc: victim@x.com"
    assert msg.get_all("To") == ["Carol <carol@example.org>"]


@pytest.mark.parametrize("evil", ["\r", "\n", "\r\n", "\x00", "\u2028", "\u2029", "\x0b\x0c\x85"])
def test_r60_control_characters_never_reach_headers(evil: str) -> None:
    msg = build(
        to=[f"Car{evil}ol{evil}Bcc: x@y.z <carol@example.org>"],
        subject=f"Hi{evil}Bcc: victim@x.com",
        from_name=f"Alice{evil}X-Evil: 1",
        references=[f"<a@b{evil}>", "<ok@example.org>"],
        in_reply_to=f"<orig@example.org>{evil}Bcc: victim@x.com",
    )
    assert "Bcc" not in msg and "X-Evil" not in msg
    assert msg["Subject"] == "Hi Bcc: victim@x.com"
    for name, value in msg.items():
        assert not any(ch in str(value) for ch in "\r\n\x00\u2028\u2029"), name
    assert msg["References"].split()[-1] == "<ok@example.org>"


def test_r60_long_subject_is_capped() -> None:
    msg = build(subject="x" * 2000)
    assert len(msg["Subject"]) <= SUBJECT_LIMIT


def test_r60_invalid_message_id_or_recipient_is_refused() -> None:
    with pytest.raises(ValueError):
        build(message_id="not a message id")
    with pytest.raises(ValueError):
        build(to=["no address here"])


def test_r43_acknowledgement_template_is_content_free() -> None:
    rendered = make_services().templates.render(CUSTOMER_ACKNOWLEDGEMENT, ack_context())
    assert rendered.subject == "[Example #42] Re: Printer on fire"
    assert "[Example #42]" in rendered.text and "[Example #42]" in (rendered.html or "")
    assert "Example Support" in rendered.text
    assert "Carol" not in rendered.text  # nothing the sender wrote is echoed


def test_r43_acknowledgement_subject_is_one_short_line() -> None:
    hostile = 'Win $$$ \r\nBcc: a@b "><img src=x onerror=alert(1)> ' + "spam " * 100
    rendered = make_services().templates.render(CUSTOMER_ACKNOWLEDGEMENT, ack_context(hostile))
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    assert len(rendered.subject) < 120
    assert "<img" not in (rendered.html or "")
    empty = make_services().templates.render(CUSTOMER_ACKNOWLEDGEMENT, ack_context(""))
    assert empty.subject.startswith("[Example #42] ") and "Re:" not in empty.subject


def test_r59_html_is_autoescaped_text_is_not() -> None:
    context = ack_context()
    context["helpdesk"] = {"name": "A&B <Support>", "address": HELPDESK}
    rendered = make_services().templates.render(CUSTOMER_ACKNOWLEDGEMENT, context)
    assert "A&B <Support>" in rendered.text
    assert "A&amp;B &lt;Support&gt;" in (rendered.html or "")


def test_r29_4xx_is_retried_later_and_delivered(env: Env, sink: SmtpSink) -> None:
    env = env.relay_to(sink.port)
    queue(env)
    sink.reply = "451 4.3.0 try later"
    assert drain(env) == 1
    [row] = outbox(env)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "451" in row.last_error and not sink.received
    sink.reply = None
    wait_until_due()
    assert drain(env) == 1
    [row] = outbox(env)
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(sink.received) == 1


def test_r29_5xx_fails_and_is_not_retried(env: Env, sink: SmtpSink) -> None:
    env = env.relay_to(sink.port)
    queue(env)
    sink.reply = "554 5.7.1 rejected"
    assert drain(env) == 1
    [row] = outbox(env)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "554" in row.last_error
    sink.reply = None
    wait_until_due()
    assert drain(env) == 0
    assert not sink.received


def test_r29_relay_down_is_retried_then_delivered(env: Env, sink: SmtpSink) -> None:
    down = env.relay_to(free_port())  # nothing listens there
    queue(down)
    assert drain(down) == 1
    [row] = outbox(down)
    assert (row.status, row.attempts) == ("pending", 1) and row.last_error
    wait_until_due()
    back = env.relay_to(sink.port)  # the relay answers again
    assert drain(back) == 1
    assert outbox(env)[0].status == "sent" and len(sink.received) == 1


def test_r29_gives_up_after_max_attempts(env: Env) -> None:
    env = env.relay_to(free_port()).outbound(max_attempts=2)
    queue(env)
    drain(env)
    wait_until_due()
    drain(env)
    [row] = outbox(env)
    assert (row.status, row.attempts) == ("failed", 2)
    wait_until_due()
    assert drain(env) == 0


def test_r32_crlf_subject_attack_is_sent_without_bcc(env: Env, sink: SmtpSink) -> None:
    env = env.relay_to(sink.port)
    inbound = email.message_from_bytes(CRLF_SUBJECT, policy=email.policy.default)
    hostile = str(inbound["Subject"])
    assert "\n" in hostile
    assert queue(env, subject=hostile) is not None
    assert drain(env) == 1
    [(envelope, msg)] = sink.received
    assert envelope.rcpt_tos == [CUSTOMER]
    assert "Bcc" not in msg
    assert msg["Subject"] == "[Example #1] Re: hi Bcc: victim@x.com"
    assert b"\nBcc" not in outbox(env)[0].raw


def test_r60_envelope_with_crlf_fails_without_reaching_the_relay(env: Env, sink: SmtpSink) -> None:
    env = env.relay_to(sink.port)
    with transaction(env.factory) as session:
        session.add(
            OutboxItem(
                kind="test",
                recipient="victim@x.com",
                recipients=json.dumps(["victim@x.com\r\nRCPT TO:<evil@x.com>"]),
                envelope_from=HELPDESK,
                message_id="<t@example.com>",
                raw=b"Subject: t\r\n\r\nt\r\n",
            )
        )
    assert drain(env) == 1
    assert outbox(env)[0].status == "failed"
    assert not sink.received


def test_r40_rate_limit_cuts_off_at_the_configured_count(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env = env.outbound(auto_per_recipient_10min=3)
    assert all(queue(env, number=n) is not None for n in (1, 2, 3))
    with caplog.at_level(logging.INFO, logger="postdesk.outbox"):
        assert queue(env, number=4) is None
    assert "rate limit of 3" in caplog.text and CUSTOMER in caplog.text
    with env.factory() as session:
        assert session.scalar(select(func.count()).select_from(OutboxItem)) == 3
        assert session.scalar(select(func.count()).select_from(Message)) == 3
    assert queue(env, number=4, auto=False) is not None  # a person's reply is never limited
    assert queue(env, number=5, to="dave@example.org") is not None


def test_r40_daily_limit(env: Env) -> None:
    env = env.outbound(auto_per_recipient_10min=10, auto_per_recipient_day=2)
    assert queue(env, number=1) is not None and queue(env, number=2) is not None
    assert queue(env, number=3) is None


def test_r29_no_automatic_mail_to_bouncing_contact_or_helpdesk(env: Env) -> None:
    with transaction(env.factory) as session:
        session.add(Contact(email="bounce@example.org", bouncing=True))
    assert queue(env, to="Bounce@Example.org") is None
    assert queue(env, to=HELPDESK, number=2) is None
    assert queue(env, to=f"Support <{HELPDESK.upper()}>", number=3, auto=False) is None
    assert outbox(env) == []
