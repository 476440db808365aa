"""The built-in CRM: contacts and organizations kept in postdesk's own database.

Enable with ``enabled = ["postdesk.plugins.crm"]`` and configure under ``[plugins.crm]``
(see docs/plugins.md). It answers ``postdesk_lookup_contact`` with the contact's name,
organization (its own, else the one owning its email domain), tier, phone and the priority
its tier maps to. ``postdesk contacts import FILE`` fills it from CSV or XLSX.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import ConfigError
from postdesk.models.schema import PRIORITIES
from postdesk.plugins import hookimpl
from postdesk.plugins.crm.records import PERSONAL_DOMAINS, find_contact
from postdesk.plugins.host import PluginContext


@dataclass(frozen=True)
class CrmSettings:
    """``[plugins.crm]``."""

    default_region: str = ""  # ISO 3166 code for numbers written without +country, e.g. "RU"
    tier_priority: dict[str, str] = field(default_factory=dict)  # tier -> ticket priority
    personal_domains: tuple[str, ...] = PERSONAL_DOMAINS  # never an organization's domain


def crm_settings(context: PluginContext) -> CrmSettings:
    """The checked ``[plugins.crm]`` table."""
    settings = context.options_as(CrmSettings)
    region = settings.default_region.upper()
    if region and region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"plugins.crm.default_region: unknown region {settings.default_region!r}")
    for tier, priority in settings.tier_priority.items():
        if priority not in PRIORITIES:
            raise ConfigError(
                f"plugins.crm.tier_priority.{tier}: must be one of {', '.join(PRIORITIES)}, "
                f"got {priority!r}"
            )
    return CrmSettings(region, settings.tier_priority, settings.personal_domains)


class Crm:
    """The CRM plugin object registered with the host."""

    def __init__(self, settings: CrmSettings, factory: sessionmaker[Session]) -> None:
        """Answer lookups from the database of ``factory``."""
        self.settings = settings
        self.engine: Engine = factory.kw["bind"]  # a lookup needs a connection, not a session

    @hookimpl
    def postdesk_lookup_contact(self, email: str) -> dict[str, Any] | None:
        """The contact's card; None when the address is unknown."""
        with self.engine.connect() as connection:
            card = find_contact(connection, email)
        if card is None:
            return None
        priority = self.settings.tier_priority.get(card.get("tier") or "")
        return {**card, "priority": priority} if priority else card


def create_plugin(context: PluginContext) -> Crm:
    """Build the CRM from ``[plugins.crm]``."""
    return Crm(crm_settings(context), context.reader())
