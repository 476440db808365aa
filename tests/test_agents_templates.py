"""The agent workflow's templates: all render, HTML parts escape, and a site can override them."""

from __future__ import annotations

import os
from pathlib import Path

import jinja2
import pytest

from postdesk.daemon.config import HelpdeskSettings, Settings
from postdesk.daemon.outbound.templating import (
    AGENT_ALERT,
    AGENT_COMMAND_ERROR,
    AGENT_NOTIFICATION,
    CUSTOMER_AGENT_REPLY,
    CUSTOMER_CSAT_REQUEST,
    Templates,
)

HOSTILE = "<script>alert(1)</script>"
CONTEXT: dict[str, object] = {
    "helpdesk": {"name": "Example Support", "address": "support@example.com"},
    "agent": {"name": "Alice", "email": "alice@example.com"},
    "ticket": {
        "number": 7,
        "tag": "[Example #7]",
        "subject": f"Printer {HOSTILE}",
        "status": "open",
        "priority": "high",
        "category": "billing",
        "group": "L1",
        "assignee": "",
        "requester": "carol@example.org",
    },
    "author": {"email": "carol@example.org", "name": f"Carol {HOSTILE}"},
    "subject": f"Printer {HOSTILE}",
    "text": f"Hello {HOSTILE}",
    "attachments": [
        {"filename": "a.txt", "content_type": "text/plain", "size": 3, "attached": True}
    ],
    "notes": [],
    "plugin_facts": {"contact": "ACME Corp, gold tier"},
    "event": "new",
    "reason": "no Authentication-Results and no token addressed to this agent",
    "errors": ["'#frobnicate': unknown command #frobnicate"],
    "relayed": True,
}
NAMES = [
    AGENT_NOTIFICATION,
    AGENT_ALERT,
    AGENT_COMMAND_ERROR,
    CUSTOMER_AGENT_REPLY,
    CUSTOMER_CSAT_REQUEST,
]


@pytest.mark.parametrize("name", NAMES)
def test_every_template_renders_text_and_escaped_html(name: str) -> None:
    rendered = Templates(Settings()).render(name, CONTEXT)
    assert "[Example #7]" in rendered.subject and "\n" not in rendered.subject
    assert "[Example #7]" in rendered.text
    assert rendered.html is not None and HOSTILE not in rendered.html


def test_notification_shows_what_plugins_contributed() -> None:
    rendered = Templates(Settings()).render(AGENT_NOTIFICATION, CONTEXT)
    assert "Contact: ACME Corp, gold tier" in rendered.text


def test_a_site_template_overrides_the_built_in_one(tmp_path: Path) -> None:
    (tmp_path / "customer").mkdir()
    (tmp_path / "customer" / "csat_request.subject.j2").write_text("Rate {{ ticket.tag }}\n")
    settings = Settings(helpdesk=HelpdeskSettings(templates_dir=str(tmp_path)))
    rendered = Templates(settings).render(CUSTOMER_CSAT_REQUEST, CONTEXT)
    assert rendered.subject == "Rate [Example #7]"
    assert "1 (poor) to 5 (excellent)" in rendered.text, "parts not overridden stay built in"


def test_an_included_template_is_read_once_per_process_like_the_parts(tmp_path: Path) -> None:
    """Included files are not checked on disk again for every mail: like the template parts
    (and the configuration), a change applies when the daemon restarts."""
    (tmp_path / "agent").mkdir()
    facts = tmp_path / "agent" / "_facts.txt.j2"
    facts.write_text("Facts: first\n")
    settings = Settings(helpdesk=HelpdeskSettings(templates_dir=str(tmp_path)))
    templates = Templates(settings)
    assert "Facts: first" in templates.render(AGENT_NOTIFICATION, CONTEXT).text
    facts.write_text("Facts: second\n")
    os.utime(facts, (facts.stat().st_atime, facts.stat().st_mtime + 10))
    rendered = templates.render(AGENT_NOTIFICATION, CONTEXT).text
    assert "Facts: first" in rendered and "Facts: second" not in rendered
    assert "Facts: second" in Templates(settings).render(AGENT_NOTIFICATION, CONTEXT).text


def test_templates_see_jinjas_global_helpers(tmp_path: Path) -> None:
    """range, namespace and dict stay available to site templates (the globals every template
    gets are built when it is loaded)."""
    (tmp_path / "agent").mkdir()
    helpers = (
        "{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% endfor %}"
    )
    (tmp_path / "agent" / "alert.subject.j2").write_text(
        helpers + "Sum {{ ns.n }} {{ dict(a=1).a }}"
    )
    settings = Settings(helpdesk=HelpdeskSettings(templates_dir=str(tmp_path)))
    templates = Templates(settings)
    for _ in range(2):
        assert templates.render(AGENT_ALERT, CONTEXT).subject == "Sum 3 1"


def test_dotted_names_read_a_dicts_methods_first_then_its_items(tmp_path: Path) -> None:
    """``value.items`` is the dict's method, as in Jinja; ``value.tag`` its item; a missing
    one is an error (StrictUndefined)."""
    (tmp_path / "agent").mkdir()
    source = "{{ ticket.tag }} {{ ticket.items() | list | length }} {{ plugins.get('x', 1) }}"
    (tmp_path / "agent" / "alert.subject.j2").write_text(source)
    (tmp_path / "agent" / "flood.subject.j2").write_text("{{ ticket.nothing }}")
    settings = Settings(helpdesk=HelpdeskSettings(templates_dir=str(tmp_path)))
    templates = Templates(settings, lambda name, context: {"items": 5, "get": 6})
    context = {**CONTEXT, "ticket": {**CONTEXT["ticket"], "items": "shadowed"}}  # type: ignore[dict-item]
    assert templates.render(AGENT_ALERT, context).subject == "[Example #7] 10 1"
    with pytest.raises(jinja2.UndefinedError):
        templates.render("agent/flood", context)
