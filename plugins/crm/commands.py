"""The ``postdesk contacts`` commands: list the CRM's cards, import a contact file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import Settings
from postdesk.daemon.store.db import transaction
from postdesk.plugins.crm import CrmSettings, crm_settings
from postdesk.plugins.crm.importer import ImportFileError, import_contacts
from postdesk.plugins.crm.records import all_cards
from postdesk.plugins.host import PluginContext

__all__ = ["ImportFileError", "import_file", "list_contacts"]


def import_file(
    settings: Settings, factory: sessionmaker[Session], path: str, region: str | None
) -> int:
    """Import ``path`` and print what happened, each unusable row with its reason. The
    region and free-mail domains are those of ``[plugins.crm]``, else of ``[plugins.crm_csv]``
    (the CRM fed from a file shares its settings)."""
    tables = settings.plugins.options
    name = "crm" if "crm" in tables or "crm_csv" not in tables else "crm_csv"
    options = crm_settings(PluginContext(name, settings, _crm_keys(tables.get(name, {}))))
    chosen = (region or options.default_region).upper()
    source = Path(path)
    if not source.is_file():
        raise ImportFileError(f"{path}: no such file")
    with transaction(factory) as session:
        report = import_contacts(session, source, chosen, frozenset(options.personal_domains))
    for problem in report.problems:
        print(problem)
    print(
        f"{report.created} contact(s) created, {report.updated} updated, "
        f"{report.merged} duplicate row(s) merged, {len(report.problems)} problem(s)"
    )
    return 0


def _crm_keys(table: dict[str, Any]) -> dict[str, Any]:
    """The keys of a CRM plugin's table that :class:`CrmSettings` reads."""
    known = {f.name for f in dataclasses.fields(CrmSettings)}
    return {key: value for key, value in table.items() if key in known}


def list_contacts(factory: sessionmaker[Session], as_json: bool) -> int:
    """Print every contact card, as a table or JSON."""
    with factory() as session:
        cards = all_cards(session)
    if as_json:
        print(json.dumps(cards, indent=2, ensure_ascii=False))
        return 0
    for c in cards:
        extra = ", ".join(str(v) for v in (c["organization"], c["tier"], c["phone"]) if v)
        print(f"{c['email']:<40} {c['name'] or '-':<30} {extra}")
    return 0
