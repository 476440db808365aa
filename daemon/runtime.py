"""Open everything a command needs from the settings: database, schema, secret, spool."""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.agents.tokens import Tokens, load_secret
from postdesk.daemon.config import Settings
from postdesk.daemon.intake.spool import Spool
from postdesk.daemon.outbound.templating import Templates
from postdesk.daemon.preflight import ensure_data_dir
from postdesk.daemon.services import Services
from postdesk.daemon.store.db import make_engine, session_factory, transaction, upgrade_schema
from postdesk.plugins.facts import FactsFolder
from postdesk.plugins.host import load_plugins
from postdesk.plugins.runner import PluginRunner
from postdesk.plugins.snapshots import freeze

FACTS = "lookups"  # in the data dir: what the plugins looked up ahead of the worker
MALLOC_ARENAS = 2  # glibc malloc heaps a long-running process keeps (see limit_malloc_arenas)
M_ARENA_MAX = -8  # glibc's mallopt parameter for that (malloc.h)


@dataclass(frozen=True)
class Runtime:
    """The opened database, the services built on the settings, and the spool."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    services: Services
    spool: Spool
    secret: bytes


def open_database(settings: Settings) -> Engine:
    """Create the data dir and upgrade the schema; raises when the database cannot be reached."""
    ensure_data_dir(settings)
    engine = make_engine(settings.database_url)
    upgrade_schema(engine)
    return engine


def open_runtime(settings: Settings) -> Runtime:
    """Open the database (:func:`open_database`) and load the HMAC secret; raises when the
    database cannot be reached."""
    engine = open_database(settings)
    with transaction(session_factory(engine)) as session:
        secret = load_secret(session, settings)
    return build_runtime(settings, secret, engine)


def build_runtime(settings: Settings, secret: bytes, engine: Engine | None = None) -> Runtime:
    """The runtime for a schema and secret already prepared; touches no database."""
    engine = engine or make_engine(settings.database_url)
    factory = session_factory(engine)
    plugins = PluginRunner(load_plugins(settings, factory), FactsFolder(settings.data_dir / FACTS))

    def variables(name: str, context: Mapping[str, object]) -> Mapping[str, object]:
        return plugins.template_variables(name, freeze(context.get("ticket")))

    services = Services(
        settings=settings,
        tokens=Tokens(secret, settings.helpdesk.domain),
        templates=Templates(settings, variables),
        plugins=plugins,
    )
    spool = Spool(settings.data_dir / "spool")
    return Runtime(settings, engine, factory, services, spool, secret)


def settle_heap() -> None:
    """Put everything built so far out of the garbage collector's sight (``gc.freeze``).

    A long-running process calls this once it is set up: its settings, schema, compiled
    templates, models and plugins live as long as it does, and each full collection would
    otherwise walk them all again (in the plugins process, a fifth of its CPU under load).
    Cycles made later are collected as before.
    """
    gc.collect()
    gc.freeze()


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Let glibc's malloc spread the process's threads over at most ``arenas`` heaps; True
    when it took effect.

    A long-running process calls this first, before it starts a thread. By default glibc gives
    threads up to eight heaps per core, and each keeps the memory its threads freed for their
    own later use. In the plugins process (a dozen threads: the plugins' executor, the loop,
    asyncio's default executor) that was 50 MiB held free at the end of a 100,000-mail soak
    (``bench/bench_soak.py --plugins``). A ``MALLOC_ARENA_MAX`` in the environment, which glibc
    reads itself, is left to rule; other C libraries have no such heaps (False).
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
