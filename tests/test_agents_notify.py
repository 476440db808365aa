"""End to end: what agents receive about new tickets and customer replies, and who receives it."""

from __future__ import annotations

from pathlib import Path

from tests.agentmail import (
    AGENTS,
    ALICE,
    BOB,
    DAVE,
    daemon_with_agents,
    notifications,
    plain_text,
    reply_to,
    tokens,
    wait_mails,
)
from tests.support import CUSTOMER, HELPDESK, SmtpSink, make_mail, send, wait_until

NEW_MAIL_BODY = """Hello,
my printer is on fire.
Carol

On Sun, 5 May 2024, Someone Else wrote:
> an older conversation that must not be copied
"""


def _customer_mail_with_files() -> bytes:
    from email import message_from_bytes, policy
    from email.message import EmailMessage

    message = message_from_bytes(
        make_mail(
            body=NEW_MAIL_BODY,
            message_id="<fire@example.org>",
            headers={"Cc": f"Dan <dan@example.org>, {HELPDESK}, {ALICE}"},
        ),
        policy=policy.default,
    )
    assert isinstance(message, EmailMessage)
    message.add_attachment(b"small file", maintype="text", subtype="plain", filename="log.txt")
    message.add_attachment(b"\0" * 5000, maintype="image", subtype="png", filename="photo.png")
    return message.as_bytes()


def test_new_ticket_notifies_every_agent_with_its_own_token(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(
        tmp_path, sqlite_url, sink, env={"POSTDESK_OUTBOUND_NOTIFY_ATTACH_MAX_BYTES": "2000"}
    ) as daemon:
        send(daemon.port, _customer_mail_with_files())
        checker = tokens()
        for agent in AGENTS:
            mail = wait_mails(sink, agent, 1, f"notification to {agent}")[0]
            assert mail["Subject"] == "[Example #1] New: Printer on fire"
            assert mail["Reply-To"] == HELPDESK and HELPDESK in mail["From"]
            assert mail["Auto-Submitted"] == "auto-replied"
            assert mail["In-Reply-To"] == "<fire@example.org>"
            token = checker.verify(mail["Message-ID"])
            assert token is not None and token.ticket_number == 1
            assert token.agent_key == checker.agent_key(agent), "each token names its agent"
            text = plain_text(mail)
            assert "my printer is on fire" in text
            assert "older conversation" not in text, "quoted history is trimmed"
            assert f"Requester: {CUSTOMER}" in text and "Priority:  normal" in text
            assert "Category:  -" in text
            assert "log.txt (text/plain, 10 bytes)" in text
            assert "photo.png (image/png, 5000 bytes), not attached: too large" in text
            files = [part.get_filename() for part in mail.iter_attachments()]
            assert files == ["log.txt"]
            html = mail.get_body(preferencelist=("html",))
            assert html is not None and "my printer is on fire" in html.get_content()
        assert len(sink.to(CUSTOMER)) == 1, "the customer only gets the acknowledgement"

        ticket = daemon.ticket(1)
        assert ticket["participants"] == [CUSTOMER, "dan@example.org"], "Cc minus helpdesk/agents"
        copies = [m for m in ticket["messages"] if m["direction"] == "out" and m["internal"]]
        assert len(copies) == 3 and all(m["auto"] for m in copies)


def test_replies_go_to_the_assignee_else_the_group_else_everyone(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        send(daemon.port, make_mail(subject="first", message_id="<one@example.org>"))
        send(daemon.port, make_mail(subject="second", message_id="<two@example.org>"))
        for agent in AGENTS:
            wait_mails(sink, agent, 2, f"two notifications to {agent}")
        to_alice_1 = notifications(sink, ALICE, 1)[0]
        to_alice_2 = notifications(sink, ALICE, 2)[0]
        send(daemon.port, reply_to(to_alice_1, "#assign bob", ALICE), sender=ALICE)
        send(daemon.port, reply_to(to_alice_2, "#category outage", ALICE), sender=ALICE)
        wait_until(lambda: daemon.ticket(2)["category"] == "outage", what="both commands run")
        assert daemon.ticket(1)["assignee"] == BOB

        send(daemon.port, make_mail(subject="Re: [Example #1] first", body="more on one\n"))
        send(daemon.port, make_mail(subject="Re: [Example #2] second", body="more on two\n"))
        to_bob = wait_until(lambda: notifications(sink, BOB, 1)[1:], what="reply to assignee")
        assert to_bob[0]["Subject"] == "[Example #1] Reply: first"
        assert "more on one" in plain_text(to_bob[0])
        to_dave = wait_until(lambda: notifications(sink, DAVE, 2)[1:], what="reply to group L2")
        assert "more on two" in plain_text(to_dave[0])
        assert len(notifications(sink, ALICE, 1)) == 1 and len(notifications(sink, DAVE, 1)) == 1
        assert len(notifications(sink, ALICE, 2)) == 1 and len(notifications(sink, BOB, 2)) == 1
