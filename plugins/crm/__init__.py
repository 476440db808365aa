"""The built-in CRM: contacts and organizations kept in postdesk's own database.

Enable with ``enabled = ["postdesk.plugins.crm"]`` and configure under ``[plugins.crm]``
(see docs/plugins.md). It answers ``postdesk_lookup_contact`` with the contact's name,
organization (its own, else the one owning its email domain), tier, phone and the priority
its tier maps to. The lookups asked in one round of the event loop (a prefetch round starts
many) share one database read in one thread. ``postdesk contacts import FILE`` fills it from
CSV or XLSX.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

import phonenumbers
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import ConfigError
from postdesk.models.schema import PRIORITIES
from postdesk.plugins import hookimpl
from postdesk.plugins.crm.records import PERSONAL_DOMAINS, find_contacts
from postdesk.plugins.host import PluginContext


@dataclass(frozen=True)
class CrmSettings:
    """``[plugins.crm]``."""

    default_region: str = ""  # ISO 3166 code for numbers written without +country, e.g. "RU"
    tier_priority: dict[str, str] = field(default_factory=dict)  # tier -> ticket priority
    personal_domains: tuple[str, ...] = PERSONAL_DOMAINS  # never an organization's domain


S = TypeVar("S", bound=CrmSettings)


def crm_settings(context: PluginContext) -> CrmSettings:
    """The checked ``[plugins.crm]`` table."""
    return checked(context.options_as(CrmSettings), context.name)


def checked(settings: S, name: str) -> S:
    """A CRM plugin's settings (``[plugins.<name>]``, read as :class:`CrmSettings` or a
    subclass adding its own keys), checked, with the region upper-cased."""
    region = settings.default_region.upper()
    if region and region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"plugins.{name}.default_region: unknown region {settings.default_region!r}"
        )
    for tier, priority in settings.tier_priority.items():
        if priority not in PRIORITIES:
            raise ConfigError(
                f"plugins.{name}.tier_priority.{tier}: must be one of {', '.join(PRIORITIES)}, "
                f"got {priority!r}"
            )
    return dataclasses.replace(settings, default_region=region)


class Crm:
    """The CRM plugin object registered with the host."""

    def __init__(self, settings: CrmSettings, factory: sessionmaker[Session]) -> None:
        """Answer lookups from the database of ``factory``."""
        self.settings = settings
        self.engine: Engine = factory.kw["bind"]  # a lookup needs a connection, not a session
        # The addresses asked in this round of a loop, each with the future of its card.
        self._round: tuple[asyncio.AbstractEventLoop, dict[str, asyncio.Future[Any]]] | None = None

    @hookimpl
    async def postdesk_lookup_contact(self, email: str) -> dict[str, Any] | None:
        """The contact's card; None when the address is unknown. Read together with the
        other addresses asked in the same round of the event loop."""
        loop = asyncio.get_running_loop()
        round_ = self._round
        if round_ is None or round_[0] is not loop:  # the first address of a round
            round_ = self._round = (loop, {})
            loop.call_soon(self._read_round, round_)
        asked = round_[1]
        address = email.lower()
        if address not in asked:
            asked[address] = loop.create_future()
        card = await asyncio.shield(asked[address])  # a caller's timeout cancels only its wait
        if card is None:
            return None
        priority = self.settings.tier_priority.get(card.get("tier") or "")
        return {**card, "priority": priority} if priority else card

    def _read_round(
        self, round_: tuple[asyncio.AbstractEventLoop, dict[str, asyncio.Future[Any]]]
    ) -> None:
        """Read the cards of the addresses asked in ``round_``, in one thread."""
        if self._round is round_:
            self._round = None
        asked = round_[1]
        reading = asyncio.ensure_future(asyncio.to_thread(self._cards, list(asked)))
        reading.add_done_callback(lambda done: _answer(asked, done))

    def _cards(self, emails: list[str]) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as connection:
            return find_contacts(connection, emails)


def _answer(
    asked: dict[str, asyncio.Future[Any]], reading: asyncio.Future[dict[str, dict[str, Any]]]
) -> None:
    """Hand each address asked its card (None when unknown), or the error of the read."""
    error = asyncio.CancelledError() if reading.cancelled() else reading.exception()
    for address, future in asked.items():
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(reading.result().get(address))


def create_plugin(context: PluginContext) -> Crm:
    """Build the CRM from ``[plugins.crm]``."""
    return Crm(crm_settings(context), context.reader())
