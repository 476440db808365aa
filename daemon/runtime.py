"""Open everything a command needs from the settings: database, schema, secret, spool."""

from __future__ import annotations

from dataclasses import dataclass

from postdesk.daemon.config import Settings
from postdesk.daemon.db import make_engine, session_factory, transaction, upgrade_schema
from postdesk.daemon.services import Services
from postdesk.daemon.spool import Spool
from postdesk.daemon.templating import Templates
from postdesk.daemon.tokens import Tokens, load_secret
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker


@dataclass(frozen=True)
class Runtime:
    """The opened database, the services built on the settings, and the spool."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    services: Services
    spool: Spool


def open_runtime(settings: Settings) -> Runtime:
    """Create the data dir, upgrade the schema and build the services; raises on a dead database."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    upgrade_schema(engine)
    factory = session_factory(engine)
    with transaction(factory) as session:
        secret = load_secret(session, settings)
    services = Services(
        settings=settings,
        tokens=Tokens(secret, settings.helpdesk.domain),
        templates=Templates(settings),
    )
    return Runtime(settings, engine, factory, services, Spool(settings.data_dir / "spool"))
