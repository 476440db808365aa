"""A CRM kept in a contact file: the built-in CRM fed from a CSV or XLSX file.

For a team whose customer list is a spreadsheet. Enable with ``enabled =
["postdesk.plugins.crm_csv"]``; the file is ``contacts.csv`` in the data directory unless
``[plugins.crm_csv] file`` names another. It is imported as ``postdesk contacts import``
imports it (the same columns, merging by email, phones made E.164), into postdesk's own
contacts and organizations, when ``postdesk serve``'s plugins process starts (or a lookup
first needs it) and again whenever the file changes, checked every ``check_seconds``.
Lookups are then answered as :mod:`postdesk.plugins.crm` answers them. A row removed from
the file leaves its card (the CRM also keeps a card of every requester). A file that cannot
be read is logged and the cards already imported keep answering.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import ConfigError
from postdesk.daemon.store.db import transaction
from postdesk.plugins import hookimpl
from postdesk.plugins.crm import Crm, CrmSettings, checked
from postdesk.plugins.crm.importer import ImportFileError, import_contacts, read_rows
from postdesk.plugins.host import PluginContext

log = logging.getLogger("postdesk.plugins.crm_csv")

DEFAULT_FILE = "contacts.csv"  # in the data directory


@dataclass(frozen=True)
class CrmCsvSettings(CrmSettings):
    """``[plugins.crm_csv]``: the CRM's settings, and the file with how often it is checked."""

    file: str = ""  # "" = contacts.csv in the data directory (none there: no contacts from it)
    check_seconds: float = 5.0


class CrmCsv(Crm):
    """The CRM plugin object, importing its file when it is new or changed."""

    def __init__(
        self,
        settings: CrmCsvSettings,
        reader: sessionmaker[Session],
        writer: sessionmaker[Session],
        path: Path,
    ) -> None:
        """Answer lookups through ``reader``; import ``path`` through ``writer``."""
        super().__init__(settings, reader)
        self.path = path
        self.check_seconds = settings.check_seconds
        self._writer = writer
        self._imported: tuple[int, int] | None = None  # (mtime_ns, size) of the file imported
        self._checked_at = -float("inf")
        self._importing: asyncio.Future[None] | None = None

    @hookimpl
    async def postdesk_lookup_contact(self, email: str) -> dict[str, Any] | None:
        """The contact's card, after importing the file if it changed."""
        await self.refresh()
        return await super().postdesk_lookup_contact(email)

    async def serve(self, stop: asyncio.Event) -> None:
        """In serve's plugins process: import the file at start and whenever it changes."""
        while not stop.is_set():
            await self.refresh()
            await asyncio.sleep(max(self.check_seconds, 0.5))

    async def refresh(self) -> None:
        """Import the file if it changed since the last import (looked at no more often than
        every ``check_seconds``); a lookup meanwhile waits for an import in progress."""
        now = time.monotonic()
        if self._importing is None or self._importing.done():
            if now - self._checked_at < self.check_seconds:
                return
            self._checked_at = now
            version = _version(self.path)
            if version is None or version == self._imported:
                return
            self._importing = asyncio.ensure_future(self._import(version))
        await asyncio.shield(self._importing)  # a caller's timeout cancels only its wait

    async def _import(self, version: tuple[int, int]) -> None:
        try:
            await asyncio.to_thread(self._import_file)
        except (OSError, SQLAlchemyError) as error:  # unreadable or busy now: the next check
            log.warning("contacts file not imported now, will retry: %s", error)
            return
        except Exception as error:  # what the file holds: not read again until it changes
            log.warning("contacts file not imported (the cards imported before stay): %s", error)
        self._imported = version

    def _import_file(self) -> None:
        settings = self.settings
        with transaction(self._writer) as session:
            report = import_contacts(
                session, self.path, settings.default_region, frozenset(settings.personal_domains)
            )
        log.info(
            "contacts file %s imported: %d created, %d updated, %d problem(s)%s",
            self.path,
            report.created,
            report.updated,
            len(report.problems),
            f" (first: {report.problems[0]})" if report.problems else "",
        )


def _version(path: Path) -> tuple[int, int] | None:
    """What tells one state of the file from another; None when there is no file."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def create_plugin(context: PluginContext) -> CrmCsv:
    """Build the plugin from ``[plugins.crm_csv]``; a file named there must exist and have an
    email column."""
    settings = checked(context.options_as(CrmCsvSettings), context.name)
    key = f"plugins.{context.name}"
    if settings.check_seconds < 0:
        raise ConfigError(f"{key}.check_seconds: must be 0 or more, got {settings.check_seconds}")
    path = Path(settings.file) if settings.file else context.settings.data_dir / DEFAULT_FILE
    if settings.file and not path.is_file():
        raise ConfigError(f"{key}.file: no such file: {path}")
    if path.is_file():
        try:
            next(read_rows(path), None)  # the header: an email column, a readable file
        except (ImportFileError, OSError) as error:
            raise ConfigError(f"{key}.file: {error}") from None
    return CrmCsv(settings, context.reader(), context.database(), path)
