"""``postdesk.plugins.crm_csv``: the CRM fed from a contact file, as SPEC's example config
enables it: imported when first needed and again when the file changes, checked at start."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from postdesk.daemon.config import ConfigError, Settings
from postdesk.daemon.store.db import make_engine, session_factory, upgrade_schema
from postdesk.plugins import crm_csv
from postdesk.plugins.host import PluginContext
from tests.support import CUSTOMER, Daemon, SmtpSink, make_mail, send, wait_until, write_config

AGENT = "alice@example.com"
SPEC_EXAMPLE = '[plugins]\nenabled = ["postdesk.plugins.crm_csv"]\n'  # SPEC section 2


def _plugin(tmp_path: Path, **options: Any) -> crm_csv.CrmCsv:
    engine = make_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    upgrade_schema(engine)
    defaults = Settings()
    settings = dataclasses.replace(
        defaults, helpdesk=dataclasses.replace(defaults.helpdesk, data_dir=str(tmp_path))
    )
    return crm_csv.create_plugin(
        PluginContext("crm_csv", settings, options, session_factory(engine))
    )


def _card(plugin: crm_csv.CrmCsv, email: str) -> dict[str, Any]:
    card = asyncio.run(plugin.postdesk_lookup_contact(email))
    assert card is not None, email
    return card


def _touch_later(path: Path) -> None:
    """Move the file's time on, so that a rewrite within one clock tick is seen."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_contacts_come_from_the_file_and_follow_its_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("Email,Name,Company,Tier\nanna@shop.de,Anna,Shop GmbH,gold\n")
    plugin = _plugin(tmp_path, check_seconds=0, tier_priority={"gold": "high"})

    card = _card(plugin, "Anna@Shop.de")
    assert (card["name"], card["organization"], card["priority"]) == ("Anna", "Shop GmbH", "high")

    contacts.write_text(
        "Email,Name,Company,Tier\nanna@shop.de,Anna Berg,Shop GmbH,\nbo@b.de,Bo,,\n"
    )
    _touch_later(contacts)
    assert _card(plugin, "anna@shop.de")["name"] == "Anna Berg"
    assert _card(plugin, "bo@b.de")["name"] == "Bo"

    # A file made unreadable later is logged; the cards imported before keep answering.
    contacts.write_text("Name,Phone\nX,1\n")
    _touch_later(contacts)
    with caplog.at_level(logging.WARNING, logger="postdesk.plugins.crm_csv"):
        assert _card(plugin, "bo@b.de")["name"] == "Bo"
    assert "no email column" in caplog.text


def test_a_changed_file_is_looked_at_only_every_check_seconds(tmp_path: Path) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("email,name\nanna@shop.de,Anna\n")
    plugin = _plugin(tmp_path, check_seconds=3600)
    assert _card(plugin, "anna@shop.de")["name"] == "Anna"
    contacts.write_text("email,name\nanna@shop.de,Anna Berg\n")
    _touch_later(contacts)
    assert _card(plugin, "anna@shop.de")["name"] == "Anna"


def test_no_file_in_the_data_directory_means_no_contacts_from_it(tmp_path: Path) -> None:
    plugin = _plugin(tmp_path, check_seconds=0)
    assert asyncio.run(plugin.postdesk_lookup_contact("anna@shop.de")) is None
    (tmp_path / "contacts.csv").write_text("email,name\nanna@shop.de,Anna\n")
    assert _card(plugin, "anna@shop.de")["name"] == "Anna"


@pytest.mark.parametrize(
    ("options", "content", "message"),
    [
        ({"file": "missing.csv"}, None, r"plugins\.crm_csv\.file: no such file: missing\.csv"),
        ({}, "Name,Phone\nX,1\n", r"plugins\.crm_csv\.file: .*no email column"),
        ({"check_seconds": -1}, None, r"plugins\.crm_csv\.check_seconds: must be 0 or more"),
        ({"default_region": "XX"}, None, r"plugins\.crm_csv\.default_region: unknown region"),
        ({"fiel": "c.csv"}, None, r"plugins\.crm_csv.*fiel"),
    ],
)
def test_bad_settings_and_files_are_refused_at_start(
    tmp_path: Path, options: dict[str, Any], content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "contacts.csv").write_text(content)
    with pytest.raises(ConfigError, match=message):
        _plugin(tmp_path, **options)


def _plain(mail: EmailMessage) -> str:
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def test_specs_example_config_fills_the_agent_notification_from_the_file(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    agents = f'[[agents]]\nemail = "{AGENT}"\nname = "Alice"\n'
    config = write_config(
        tmp_path, sqlite_url, relay=f"smtp://127.0.0.1:{sink.port}", extra=agents + SPEC_EXAMPLE
    )
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "contacts.csv").write_text(
        f"E-mail;Name;Organisation;Telephone;Tier\n{CUSTOMER};Carol Jones;ACME Ltd;+44 20 7946 0958;gold\n"
    )
    daemon = Daemon(config, tmp_path)
    checked = daemon.cli("check", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    daemon.start()
    try:
        code, _ = send(daemon.port, make_mail(subject="Printer", body="It is on fire.\n"))
        assert code == 250
        mail = wait_until(lambda: sink.to(AGENT), what="agent notification")[0]
        assert "Contact:   Carol Jones, ACME Ltd (tier gold), +442079460958" in _plain(mail)
        listed = daemon.cli("contacts")
        assert "Carol Jones" in listed.stdout
    finally:
        daemon.stop()


def test_contacts_import_takes_the_region_of_the_crm_csv_table(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'p.db'}",
        extra=SPEC_EXAMPLE
        + '[plugins.crm_csv]\ndefault_region = "DE"\nlookup_timeout_seconds = 3\n',
    )
    other = tmp_path / "more.csv"
    other.write_text("Email,Name,Phone\nanna@shop.de,Anna,030 1234567\n")
    daemon = Daemon(config, tmp_path)
    imported = daemon.cli("contacts", "import", str(other), check=False)
    assert imported.returncode == 0, imported.stderr
    assert "1 contact(s) created" in imported.stdout and "problem(s)" in imported.stdout
    listed = daemon.cli("contacts", "--json")
    assert '"phone": "+49301234567"' in listed.stdout
