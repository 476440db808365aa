"""The fast composer builds mail that parses back to what the stdlib composer built.

Reference: ``tests/compose_reference.py`` (the composer as it was). Both compose the same
inputs; both results are parsed with ``email.policy.default`` and compared part by part:
every header by its meaning (addresses as (name, address) pairs, MIME types with their
parameters except the random boundary, other headers as decoded text) and every leaf part's
decoded content. Inputs: every template, rendered with subjects and names taken from the mail
corpus (``POSTDESK_CORPUS``) and from hand-written hostile cases; and every mail the real
pipeline writes while it processes the corpus with two agents (acknowledgements, agent
notifications carrying the customers' attachments).
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import functools
import os
import re
import time
from collections.abc import Iterator
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from postdesk.daemon.config import Agent, load_settings
from postdesk.daemon.intake.spool import Envelope
from postdesk.daemon.outbound import compose as compose_module
from postdesk.daemon.outbound import outbox as outbox_module
from postdesk.daemon.outbound.templating import (
    AGENT_ALERT,
    AGENT_COMMAND_ERROR,
    AGENT_NOTIFICATION,
    CUSTOMER_ACKNOWLEDGEMENT,
    CUSTOMER_AGENT_REPLY,
    CUSTOMER_CSAT_REQUEST,
    Rendered,
)
from postdesk.daemon.runtime import Runtime, open_runtime
from postdesk.daemon.worker import DatabaseHealth, Worker
from tests import compose_reference
from tests.test_agents_templates import CONTEXT
from tests.test_compose import make_services

CORPUS = Path(
    os.environ.get("POSTDESK_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)
_SURROGATE = re.compile("[\ud800-\udfff]")
TEMPLATES = [
    CUSTOMER_ACKNOWLEDGEMENT,
    CUSTOMER_AGENT_REPLY,
    CUSTOMER_CSAT_REQUEST,
    AGENT_NOTIFICATION,
    AGENT_COMMAND_ERROR,
    AGENT_ALERT,
]
HOSTILE_SUBJECTS = [
    "Printer on fire",
    "",
    "x" * 2000,
    "Grüße 🙂 aus Köln",
    "Re: [Example #7] Re: Fwd: " + "long words " * 30,
    "a\r\nBcc: victim@x.com\u2028X-Evil: 1\x00",
    "tab\there and  many   spaces",
    "日本語の件名がとても長い場合にはどのように折り返されるのでしょうか" * 3,
    'quotes "inside" and \\backslash\\ (comment) <angle> ; : , .',
]
HOSTILE_NAMES = [
    "",
    "Carol",
    "Jürgen Müller",
    'Al "the" (x) Smith, Jr.',
    "Bcc: x@y.z\r\nX-Evil: 1",
    "Zoë 🙂 " * 20,
    "a" * 150,
    "back\\slash",
]
HOSTILE_FILES = [
    ("a.txt", "text/plain", b"abc"),
    ("../../etc/passwd\r\n", "text/plain", b"root:x"),
    ("résumé très long name with spaces and stuff and more stuff.pdf", "application/pdf", b"%"),
    ("x" * 200 + ".bin", "multipart/x", b"\0" * 1000),
    ('quote".txt', "TEXT/Plain ", b""),
    ("名前.docx", "application/vnd.openxmlformats", bytes(range(256)) * 40),
]
BODIES = [
    "Hello Carol\n",
    "",
    "ünïcödé short lines\nsecond\n",
    "y" * 100 + "\nü\n",
    "ü" * 100 + "\nü\n",
    "crlf\r\nlines\rand lone CR\n\n\nend",
    "no final newline",
]


def semantic_headers(part: EmailMessage, root: bool) -> list[tuple[str, object]]:
    """The headers of ``part`` by meaning, sorted; MIME-Version counts on the top part only."""
    result: list[tuple[str, object]] = []
    for name, value in part.items():
        key = name.lower()
        if key == "mime-version" and not root:
            continue
        meaning: object
        if hasattr(value, "addresses"):
            # Without whitespace: policy.default's phrase parser mis-spaces long encoded names
            # (it turns the reference's own output into "Zo ë"); exact names are checked by
            # test_long_encoded_names_decode_exactly with email.header.decode_header.
            meaning = tuple(("".join(a.display_name.split()), a.addr_spec) for a in value.addresses)
        elif hasattr(value, "params"):
            params = {k: v for k, v in value.params.items() if k != "boundary"}
            kind = getattr(value, "content_type", None) or getattr(
                value, "content_disposition", None
            )
            meaning = (kind, sorted(params.items()))
        else:
            # Inputs have single spaces (one_line); the parser keeps some folding whitespace of
            # the reference's output (a fold before the first word, two spaces around a fold).
            meaning = " ".join(str(value).split())
        result.append((key, meaning))
    return sorted(result, key=repr)


def describe(raw: bytes) -> list[object]:
    """``raw`` parsed back: per part, its headers by meaning and its decoded content."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects, message.defects
    parts: list[object] = []
    for index, part in enumerate(message.walk()):
        assert isinstance(part, EmailMessage)
        assert not part.defects, part.defects
        content = None if part.is_multipart() else part.get_payload(decode=True)
        parts.append((semantic_headers(part, index == 0), content, part.get_filename()))
    return parts


def assert_well_formed(raw: bytes) -> None:
    """CRLF only, header lines within 998 octets and folded to 78 where there is a space."""
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert len(line) <= 998
        if len(line) > 78:
            assert b" " not in line.strip()[line.find(b":") + 2 :], line


def both(services: Any, **arguments: Any) -> tuple[bytes | None, bytes | None]:
    """What the reference and the product composer make of the same input (None: refused)."""
    results: list[bytes | None] = []
    for composer in (compose_reference.compose, compose_module.compose):
        try:
            results.append(composer(services, **arguments))
        except ValueError:
            results.append(None)
    return results[0], results[1]


def check(services: Any, **arguments: Any) -> None:
    """Assert that the two composers agree on ``arguments``."""
    old, new = both(services, **arguments)
    if new is not None:
        assert_well_formed(new)
    if old is None:
        # The reference refused it (its post-check caught a header it would have injected, or
        # an address it could not write); the product may write it safely instead.
        if new is not None:
            parsed = email.message_from_bytes(new, policy=email.policy.default)
            assert "Bcc" not in parsed and "X-Evil" not in parsed
        return
    assert new is not None, f"the product refused what the reference composed: {arguments}"
    theirs, ours = describe(old), describe(new)
    assert len(ours) == len(theirs), "different MIME structure"
    for index, (their_part, our_part) in enumerate(zip(theirs, ours, strict=True)):
        assert our_part == their_part, f"part {index} differs"


@functools.cache
def corpus_subjects_and_names() -> list[tuple[str, str]]:
    """(subject, sender name) of every corpus mail used here; empty without the corpus."""
    pairs: list[tuple[str, str]] = []
    files = sorted((CORPUS / "zammad-mail").glob("*.box"))
    files += sorted((CORPUS / "django-helpdesk").glob("*"))
    files += sorted((CORPUS / "spamassassin").rglob("*"))[:40]
    for path in files:
        if not path.is_file():
            continue
        raw = path.read_bytes()
        if raw.startswith(b"From "):
            raw = raw.split(b"\n", 1)[-1]
        message = email.message_from_bytes(raw, policy=email.policy.default)
        try:
            subject = str(message.get("Subject", ""))
            sender = message.get("From")
            addresses = getattr(sender, "addresses", ()) if sender is not None else ()
            name = addresses[0].display_name if addresses else ""
        except Exception:  # a header the stdlib cannot parse: not a composer input
            continue
        if not any(_SURROGATE.search(text) for text in (subject, name)):
            pairs.append((subject, name))  # undecodable bytes: see test_undecodable_text
    return pairs


def template_context(subject: str, name: str) -> dict[str, object]:
    """The shared template context with the ticket subject and author name replaced."""
    context = dict(CONTEXT)
    context["ticket"] = {**CONTEXT["ticket"], "subject": subject}  # type: ignore[dict-item]
    context["author"] = {"email": "carol@example.org", "name": name}
    context["subject"] = subject
    context["customer_name"] = name
    context["text"] = f"{subject}\n\n{name}\n" + "a line of text that is long enough " * 4
    return context


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_with_hostile_subjects_and_names(template: str) -> None:
    services = make_services()
    names, subjects = HOSTILE_NAMES, HOSTILE_SUBJECTS
    cases = [(s, names[i % len(names)]) for i, s in enumerate(subjects)]
    cases += [(subjects[(i + 3) % len(subjects)], n) for i, n in enumerate(names)]
    for subject, name in cases:
        rendered = services.templates.render(template, template_context(subject, name))
        check(
            services,
            to=[f"{name} <carol@example.org>", "dave@example.org"],
            cc=[f'"{name}" <erin@example.org>'],
            subject=subject,
            rendered=rendered,
            message_id=services.tokens.mint(7, "alice@example.com"),
            in_reply_to="<orig@example.org>",
            references=[f"<r{i}@example.org>" for i in range(25)],
            auto=template != CUSTOMER_AGENT_REPLY,
            from_name=name or None,
        )


@pytest.mark.skipif(not (CORPUS / "zammad-mail").is_dir(), reason=f"no corpus at {CORPUS}")
def test_every_template_with_corpus_subjects_and_names() -> None:
    services = make_services()
    pairs = corpus_subjects_and_names()
    assert len(pairs) > 120
    for index, (subject, name) in enumerate(pairs):
        template = TEMPLATES[index % len(TEMPLATES)]  # each template sees a sixth of the corpus
        rendered = services.templates.render(template, template_context(subject, name))
        check(
            services,
            to=[f"{name} <carol@example.org>"],
            subject=rendered.subject,
            rendered=rendered,
            message_id=services.tokens.mint(7),
            in_reply_to=None,
            references=[],
            auto=True,
            from_name=name or None,
        )


@pytest.mark.parametrize("body", BODIES)
def test_bodies_alternatives_and_attachments(body: str) -> None:
    services = make_services()
    for html in (None, f"<p>{body}</p>\n", "<p>" + "é" * 200 + "</p>"):
        for count in (0, 1, len(HOSTILE_FILES)):
            check(
                services,
                to=["carol@example.org"],
                subject="Files",
                rendered=Rendered("Files", body, html),
                message_id=services.tokens.mint(9),
                in_reply_to=None,
                references=[],
                auto=False,
                attachments=HOSTILE_FILES[:count],
            )


def test_long_encoded_names_decode_exactly() -> None:
    services = make_services()
    name = " ".join(["Zoë 🙂"] * 16)
    raw = compose_module.compose(
        services,
        to=[f"{name} <carol@example.org>"],
        subject=name,
        rendered=Rendered("s", "t\n", None),
        message_id="<a@b>",
        in_reply_to=None,
        references=[],
        auto=True,
    )
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    phrase = str(parsed["To"]).rsplit("<", 1)[0]
    assert str(make_header(decode_header(phrase))).strip() == name
    assert str(make_header(decode_header(str(parsed["Subject"])))) == name


def test_text_that_looks_encoded_stays_literal() -> None:
    services = make_services()
    literal = "=?utf-8?q?hi=0D=0ABcc:_victim@x.com?="
    raw = compose_module.compose(
        services,
        to=["carol@example.org"],
        from_name=literal,
        subject=literal,
        rendered=Rendered("s", "t\n", None),
        message_id="<a@b>",
        in_reply_to=None,
        references=[],
        auto=True,
    )
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(parsed["Subject"]) == literal and "Bcc" not in parsed
    assert parsed["From"].addresses[0].display_name == literal
    # The reference composer, handed the same subject, decoded it into a Bcc header and only its
    # post-check stopped the mail; the product writes the text as text.
    with pytest.raises(ValueError):
        compose_reference.compose(
            services,
            to=["carol@example.org"],
            subject=literal,
            rendered=Rendered("s", "t\n", None),
            message_id="<a@b>",
            in_reply_to=None,
            references=[],
            auto=True,
        )


def test_undecodable_text_is_written_with_replacement_characters() -> None:
    services = make_services()
    raw = compose_module.compose(
        services,
        to=["Ups R\udcc3\udca9mi <carol@example.org>"],
        subject="Re: \udcce\udce4 x",
        rendered=Rendered("s", "body \udcc3\n", None),
        message_id="<a@b>",
        in_reply_to=None,
        references=[],
        auto=True,
    )
    assert_well_formed(raw)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(parsed["Subject"]) == "Re: ?? x"
    assert parsed["To"].addresses[0].display_name == "Ups R??mi"
    assert parsed.get_content().splitlines() == ["body ?"]


def test_invalid_ids_and_addresses_are_refused_by_both() -> None:
    services = make_services()
    base: dict[str, Any] = {
        "subject": "s",
        "rendered": Rendered("s", "t\n", None),
        "in_reply_to": None,
        "references": [],
        "auto": True,
    }
    assert both(services, to=["a@b.c"], message_id="not an id", **base) == (None, None)
    assert both(services, to=["no address"], message_id="<a@b>", **base) == (None, None)
    assert both(services, to=["a b@c.d"], message_id="<a@b>", **base) == (None, None)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """An opened runtime on SQLite with two agents and generous automatic-mail limits."""
    settings = load_settings(None, environ={})
    helpdesk = dataclasses.replace(settings.helpdesk, data_dir=str(tmp_path / "data"))
    outbound = dataclasses.replace(
        settings.outbound,
        auto_per_recipient_10min=10_000,
        auto_per_recipient_day=10_000,
        auto_total_per_hour=100_000,
    )
    agents = (Agent("alice@example.com", "Alice"), Agent("bob@example.com", "Bob"))
    opened = open_runtime(
        dataclasses.replace(settings, helpdesk=helpdesk, outbound=outbound, agents=agents)
    )
    yield opened
    opened.engine.dispose()


@pytest.mark.skipif(not (CORPUS / "zammad-mail").is_dir(), reason=f"no corpus at {CORPUS}")
def test_every_mail_the_pipeline_writes_for_the_corpus(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[str] = []
    mismatches: list[str] = []

    def checked_compose(services: Any, **arguments: Any) -> bytes:
        try:
            check(services, **arguments)
        except AssertionError as error:  # the worker would take it for a failing message
            mismatches.append(f"{arguments['subject']!r}: {error}")
        compared.append(arguments["message_id"])
        return compose_module.compose(services, **arguments)

    monkeypatch.setattr(outbox_module, "compose", checked_compose)
    files = sorted((CORPUS / "zammad-mail").glob("*.box"))
    files += sorted(p for p in (CORPUS / "django-helpdesk").glob("*") if p.is_file())
    for path in files:
        envelope = Envelope("", ("support@localhost",), "ingest", time.time())
        runtime.spool.write(path.read_bytes(), envelope)
    # Both composers run at the same instant as far as the Date header goes.
    services = dataclasses.replace(runtime.services, clock=make_services().clock)
    worker = Worker(services, runtime.factory, runtime.spool, DatabaseHealth())
    outcomes = worker.drain()
    assert mismatches == []
    assert len(outcomes) == len(files)
    assert len(compared) >= len(files)  # an acknowledgement or notification for most mails
