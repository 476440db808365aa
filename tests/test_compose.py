"""Outgoing mail: headers, header injection (R-32, R-60), bodies, and the templates."""

from __future__ import annotations

import binascii
import dataclasses
import email
import email.policy
import random
from datetime import UTC, datetime, timedelta, timezone
from email import quoprimime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2
import pytest

from postdesk.daemon.agents.tokens import Tokens
from postdesk.daemon.config import HelpdeskSettings, Settings
from postdesk.daemon.outbound.compose import (
    LINE,
    MAX_REFERENCES,
    _quoted_printable,
    _surely_qp,
    _text_part,
    clean_msgid,
    compose,
    mailbox,
)
from postdesk.daemon.outbound.templating import (
    CUSTOMER_ACKNOWLEDGEMENT,
    Rendered,
    Templates,
    one_line,
)
from postdesk.daemon.services import Services

HELPDESK = "support@example.com"
CRLF_SUBJECT = b"Subject: =?utf-8?q?hi=0D=0ABcc:_victim@x.com?=\r\n\r\n"


def make_services(templates_dir: str = "") -> Services:
    """Services for the Example helpdesk with a fixed clock."""
    settings = Settings(
        helpdesk=HelpdeskSettings(
            name="Example Support", address=HELPDESK, tag="Example", templates_dir=templates_dir
        )
    )
    return Services(
        settings=settings,
        tokens=Tokens(b"compose-test-secret", "example.com"),
        templates=Templates(settings),
        clock=lambda: datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
    )


def build(services: Services | None = None, **overrides: Any) -> EmailMessage:
    """Compose with sensible defaults, then parse the bytes back."""
    services = services or make_services()
    arguments: dict[str, Any] = {
        "to": ["Carol <carol@example.org>"],
        "subject": "[Example #42] Printer on fire",
        "rendered": Rendered("ignored", "Hello Carol\n", None),
        "message_id": services.tokens.mint(42),
        "in_reply_to": "<orig@example.org>",
        "references": ["<orig@example.org>"],
        "auto": True,
    }
    arguments.update(overrides)
    raw = compose(services, **arguments)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def ack_context(subject: str = "Printer on fire") -> dict[str, object]:
    """The context the acknowledgement template is rendered with."""
    return {
        "helpdesk": {"name": "Example Support", "address": HELPDESK},
        "ticket": {"number": 42, "subject": subject, "tag": "[Example #42]"},
        "customer_name": "Carol",
    }


def test_references_are_capped_and_end_with_the_parent() -> None:
    refs = [f"<r{i}@example.org>" for i in range(30)]
    msg = build(references=refs, in_reply_to="<r5@example.org>")
    thread = msg["References"].split()
    assert len(thread) == MAX_REFERENCES
    assert thread[-1] == "<r5@example.org>"
    assert thread[0] == "<r11@example.org>"


def test_clean_msgid() -> None:
    assert clean_msgid(" <a@b>\r\n") == "<a@b>"
    assert clean_msgid("a@b") == "<a@b>"
    assert clean_msgid("<a b@c>") == "<ab@c>"
    assert clean_msgid("<no-at>") is None
    assert clean_msgid("<" + "a" * 300 + "@b>") is None
    assert clean_msgid(None) is None
    assert clean_msgid("<a@b>\n") == "<a@b>"  # a clean-looking id with a line end is cleaned
    assert clean_msgid("<a\x00b@c>") == "<ab@c>"
    assert clean_msgid("<" + "a" * 246 + "@b>") == "<" + "a" * 246 + "@b>"  # 250: the limit
    assert clean_msgid("<" + "a" * 247 + "@b>") is None


def test_mailbox_of_a_bare_address_and_of_one_that_needs_parsing() -> None:
    assert mailbox("ana.b+x@example.org") == ("", "ana.b+x@example.org")
    assert mailbox("ana@example.org\n") == ("", "ana@example.org")
    assert mailbox("Ana <ana@example.org>") == ("Ana", "ana@example.org")
    assert mailbox('"a b"@example.org') == ("", '"a b"@example.org')
    with pytest.raises(ValueError):
        mailbox("a" * 321 + "@example.org")


def test_html_alternative_and_attachment() -> None:
    msg = build(
        rendered=Rendered("s", "plain\n", "<p>html</p>\n"),
        attachments=[
            ("../../etc/passwd\r\n", "text/plain", b"root:x"),
            ("a.bin", "multipart/x", b"\0"),
        ],
    )
    assert msg.get_content_type() == "multipart/mixed"
    body = msg.get_body(("html",))
    assert body is not None and body.get_content().strip() == "<p>html</p>"
    files = list(msg.iter_attachments())
    assert [part.get_filename() for part in files] == [".._.._etc_passwd", "a.bin"]
    assert files[1].get_content_type() == "application/octet-stream"


def test_the_acknowledgement_goes_out_without_a_transfer_encoding() -> None:
    """Its lines stay within 78 columns for a long helpdesk name and a long ticket tag, so
    neither part is quoted-printable (which cost the composer ~80k instructions a mail)."""
    services = make_services()
    context = {
        "helpdesk": {"name": "Example Customer Support Team", "address": HELPDESK},
        "ticket": {"tag": "[Example #12345678]", "subject": ""},
    }
    rendered = services.templates.render(CUSTOMER_ACKNOWLEDGEMENT, context)
    msg = build(services, rendered=rendered)
    parts = [part for part in msg.walk() if not part.is_multipart()]
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert [part["Content-Transfer-Encoding"] for part in parts] == ["7bit", "7bit"]
    assert "[Example #12345678]" in parts[0].get_content()


def test_non_ascii_names_and_subjects_are_encoded() -> None:
    msg = build(to=["Jürgen Müller <juergen@example.org>"], subject="Grüße 🙂")
    assert msg["Subject"] == "Grüße 🙂"
    assert msg["To"].addresses[0].display_name == "Jürgen Müller"


def test_quoted_printable_bodies_are_the_stdlib_encoders_text() -> None:
    """Soft breaks next to escapes and trailing white space at every position of a line."""
    rnd = random.Random(8)
    alphabet = "ab =\t\r\n\x00\x0b\x0c\x85\xe9\xff~<>xxxxxxxx"
    bodies = ["", "=", " ", "a\t\n", "=" * 200, "x" * 76 + " \n"]
    for _ in range(3000):
        bodies.append("".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 240))))
        bodies.append("".join(rnd.choice("ab \t=") for _ in range(rnd.randint(70, 240))))
        bodies.append("".join(rnd.choice("ab \t\n") for _ in range(rnd.randint(70, 400))))
    for length in range(70, 400):  # long lines without escapes, ending in every way
        bodies += ["y" * length, "y" * length + " ", "y" * (length - 1) + "\t\n" + "y" * length]
    for body in bodies:
        for eol in ("\n", "\r\n"):
            encoded = _quoted_printable(body.encode("latin-1"), eol)
            assert encoded == quoprimime.body_encode(body, LINE, eol)


def test_the_quoted_printable_shortcut_never_overrules_the_stdlibs_choice() -> None:
    """``_surely_qp`` only answers True where the sniff's QP is no longer than its base64, and
    text parts take the transfer encoding the stdlib content manager gives, with its text."""
    rnd = random.Random(9)
    for _ in range(3000):
        lines = [
            "".join(rnd.choice(rnd.choice(["ab \t.", "ab=", "=\u00e9", "a"])) for _ in range(n))
            for n in (rnd.randint(0, 300) for _ in range(rnd.randint(1, 12)))
        ]
        sniff = "\r\n".join(lines[:10]).encode() + b"\r\n"
        if _surely_qp(sniff, min(len(lines), 10)):
            assert len(_quoted_printable(sniff, "\n")) <= len(binascii.b2a_base64(sniff))
        text = "\n".join(lines) + "\n"
        reference = EmailMessage()
        reference.set_content(text, charset="utf-8")
        ours = email.message_from_bytes(_text_part("plain", text), policy=email.policy.default)
        assert ours["Content-Transfer-Encoding"] == reference["Content-Transfer-Encoding"]
        assert ours.get_content().replace("\r\n", "\n") == reference.get_content()


def test_one_line() -> None:
    assert one_line(" a\r\n b\u2028c\x00d\u202e ") == "a b c d"
    assert one_line("x" * 10, limit=5) == "xxxx…"


def test_plugin_variables_are_asked_for_only_by_templates_that_may_read_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "customer").mkdir()
    (tmp_path / "customer" / "acknowledgement.subject.j2").write_text("{{ ticket.tag }}")
    (tmp_path / "customer" / "acknowledgement.txt.j2").write_text(
        '{% include "customer/_greeting.txt.j2" %}Thanks.\n'
    )
    (tmp_path / "customer" / "_greeting.txt.j2").write_text("{{ plugins.greeting }} ")
    (tmp_path / "customer" / "agent_reply.subject.j2").write_text("{{ ticket.tag }}")
    (tmp_path / "customer" / "agent_reply.txt.j2").write_text("{{ text }}")
    (tmp_path / "customer" / "agent_reply.html.j2").write_text("<p>{{ text }}</p>")
    asked: list[str] = []

    def variables(name: str, context: Any) -> dict[str, object]:
        asked.append(name)
        return {"greeting": "Ahoy,"}

    settings = make_services(str(tmp_path)).settings
    templates = Templates(settings, variables)
    rendered = templates.render(CUSTOMER_ACKNOWLEDGEMENT, ack_context())
    assert rendered.text == "Ahoy, Thanks.\n"  # named in an included template
    reply = templates.render("customer/agent_reply", {"ticket": {"tag": "[X]"}, "text": "hi"})
    assert reply.text == "hi"
    assert asked == [CUSTOMER_ACKNOWLEDGEMENT]  # agent_reply never names plugins
    assert templates.uses(CUSTOMER_ACKNOWLEDGEMENT, "ticket")
    assert not templates.uses("customer/agent_reply", "plugins")


def test_missing_variable_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError):
        make_services().templates.render(CUSTOMER_ACKNOWLEDGEMENT, {"ticket": {}})


def test_override_dir_wins_and_html_is_optional(tmp_path: Path) -> None:
    (tmp_path / "customer").mkdir()
    (tmp_path / "customer" / "acknowledgement.subject.j2").write_text("Got it {{ ticket.tag }}")
    (tmp_path / "customer" / "acknowledgement.txt.j2").write_text("Thanks.\n")
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "custom.subject.j2").write_text("s")
    (tmp_path / "agent" / "custom.txt.j2").write_text("t")
    templates = make_services(str(tmp_path)).templates
    rendered = templates.render(CUSTOMER_ACKNOWLEDGEMENT, ack_context())
    assert rendered.subject == "Got it [Example #42]"
    assert rendered.text == "Thanks.\n"
    assert rendered.html is not None  # the built-in html part still applies
    assert templates.render("agent/custom", {}).html is None


def test_bad_template_names_are_refused() -> None:
    with pytest.raises(ValueError):
        make_services().templates.render("../../etc/passwd", {})


def test_the_date_line_follows_the_clock_to_the_second_in_its_own_zone() -> None:
    """Date lines are remembered between mails: the same instant in another zone, or the next
    second, still gets its own line."""
    services = make_services()
    moments = [
        datetime(2026, 3, 1, 12, 30, 5, 100, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 30, 5, 900_000, tzinfo=UTC),
        datetime(2026, 3, 1, 14, 30, 5, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 3, 1, 12, 30, 6, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 30, 5, 100, tzinfo=UTC),
    ]
    dates = []
    for moment in moments:
        services = dataclasses.replace(services, clock=lambda moment=moment: moment)
        dates.append(build(services)["Date"])
    assert dates == [
        "Sun, 01 Mar 2026 12:30:05 +0000",
        "Sun, 01 Mar 2026 12:30:05 +0000",
        "Sun, 01 Mar 2026 14:30:05 +0200",
        "Sun, 01 Mar 2026 12:30:06 +0000",
        "Sun, 01 Mar 2026 12:30:05 +0000",
    ]
