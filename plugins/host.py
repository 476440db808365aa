"""Loading plugins: from ``[plugins] enabled`` and the entry-point group ``postdesk``.

A plugin is a module (or any object) with ``@hookimpl`` functions. A module may instead offer
``create_plugin(context: PluginContext) -> object``: the host calls it with the plugin's own
settings table ``[plugins.<name>]`` and registers what it returns. Anything wrong (a module
that does not import, a hook name the specs do not know, a bad or orphaned settings table)
raises :class:`~postdesk.daemon.config.ConfigError` naming it, so ``serve`` and ``check``
stop with exit status 2.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pluggy
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import ConfigError, PluginSettings, Settings, build_section
from postdesk.daemon.store.db import make_reader_engine, session_factory
from postdesk.plugins import PROJECT, hookspecs
from postdesk.plugins.facade import Hooks, Timeouts

ENTRY_POINT_GROUP = PROJECT
FACTORY = "create_plugin"
# Keys of every [plugins.<name>] table that the host reads (the plugin never sees them).
EVENT_TIMEOUT = "event_timeout_seconds"  # default: [plugins] timeout_seconds
LOOKUP_TIMEOUT = "lookup_timeout_seconds"  # default: [plugins] lookup_timeout_seconds
T = TypeVar("T")


@dataclass(frozen=True)
class PluginContext:
    """What a plugin's ``create_plugin`` is given."""

    name: str
    settings: Settings
    options: Mapping[str, Any] = field(default_factory=dict)  # the [plugins.<name>] table
    factory: sessionmaker[Session] | None = None  # postdesk's database, when one is open

    def options_as(self, cls: type[T]) -> T:
        """The settings table checked against dataclass ``cls`` (unknown keys, types)."""
        built: T = build_section(cls, dict(self.options), f"plugins.{self.name}")
        return built

    def database(self) -> sessionmaker[Session]:
        """The session factory; raises ConfigError when the plugin runs without a database."""
        if self.factory is None:
            raise ConfigError(f"plugins.{self.name}: needs postdesk's database")
        return self.factory

    def reader(self) -> sessionmaker[Session]:
        """Sessions for lookups: they read the last commit and never wait for the worker's
        transaction in progress (which may be waiting for the lookup)."""
        bind = self.database().kw["bind"]
        return session_factory(make_reader_engine(bind.url.render_as_string(hide_password=False)))


@dataclass
class PluginHost:
    """The loaded plugins: their manager, the calling facade and the objects by name."""

    manager: pluggy.PluginManager
    hooks: Hooks
    plugins: dict[str, object]

    def background(self) -> list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]]:
        """The jobs plugins run while ``postdesk serve`` runs (in its plugins process): their
        ``serve(stop)`` methods."""
        jobs: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = []
        for plugin in self.plugins.values():
            serve = getattr(plugin, "serve", None)
            if callable(serve):
                jobs.append(serve)
        return jobs

    def close(self) -> None:
        """Release what the plugins and the facade hold."""
        for plugin in self.plugins.values():
            closer = getattr(plugin, "close", None)
            if callable(closer):
                closer()
        self.hooks.close()


def load_plugins(settings: Settings, factory: sessionmaker[Session] | None = None) -> PluginHost:
    """Load every enabled and installed plugin; raise ConfigError naming what is wrong."""
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    found = _enabled(settings) | _installed()
    orphans = sorted(set(settings.plugins.options) - set(found))
    if orphans:
        raise ConfigError(
            f"plugins.{orphans[0]}: no plugin of that name is loaded "
            f"(loaded: {', '.join(sorted(found)) or 'none'})"
        )
    plugins: dict[str, object] = {}
    timeouts: dict[str, Timeouts] = {}
    for name, load in sorted(found.items()):
        table = settings.plugins.options.get(name, {})
        options, timeouts[name] = _own_timeouts(name, table, settings.plugins)
        context = PluginContext(name, settings, options, factory)
        plugin = _instantiate(context, load())
        _check_names(name, plugin)
        manager.register(plugin, name=name)
        plugins[name] = plugin
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        raise ConfigError(f"plugin {error.plugin!r}: {error}") from None
    defaults = settings.plugins
    hooks = Hooks(manager, defaults.timeout_seconds, defaults.lookup_timeout_seconds, timeouts)
    return PluginHost(manager, hooks, plugins)


def _own_timeouts(
    name: str, table: dict[str, Any], defaults: PluginSettings
) -> tuple[dict[str, Any], Timeouts]:
    """The plugin's settings table without the host's keys, and the plugin's timeouts."""
    options = dict(table)
    seconds = {
        EVENT_TIMEOUT: defaults.timeout_seconds,
        LOOKUP_TIMEOUT: defaults.lookup_timeout_seconds,
    }
    for key in seconds:
        if key not in options:
            continue
        value = options.pop(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(
                f"plugins.{name}.{key}: expected seconds greater than 0, got {value!r}"
            )
        seconds[key] = float(value)
    return options, Timeouts(seconds[EVENT_TIMEOUT], seconds[LOOKUP_TIMEOUT])


def _enabled(settings: Settings) -> dict[str, Callable[[], object]]:
    """Plugins named in ``[plugins] enabled``, by the last part of their module path."""
    found: dict[str, Callable[[], object]] = {}
    for index, path in enumerate(settings.plugins.enabled):
        found[path.rpartition(".")[2]] = _importer(path, f"plugins.enabled[{index}]")
    return found


def _importer(path: str, key: str) -> Callable[[], object]:
    def load() -> object:
        try:
            return importlib.import_module(path)
        except ImportError as error:
            raise ConfigError(f"{key}: cannot import plugin {path!r}: {error}") from None

    return load


def _installed() -> dict[str, Callable[[], object]]:
    """Plugins installed as distributions with an entry point in the group ``postdesk``."""
    found: dict[str, Callable[[], object]] = {}
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found[point.name] = _entry_loader(point)
    return found


def _entry_loader(point: importlib.metadata.EntryPoint) -> Callable[[], object]:
    def load() -> object:
        try:
            return point.load()
        except Exception as error:
            raise ConfigError(
                f"entry point {point.name!r} ({point.value}): cannot load plugin: {error}"
            ) from None

    return load


def _instantiate(context: PluginContext, loaded: object) -> object:
    """The object to register: what ``create_plugin`` returns, or the module itself."""
    create = getattr(loaded, FACTORY, None)
    if callable(create):
        plugin: object = create(context)
        return plugin
    if context.options:
        raise ConfigError(f"plugins.{context.name}: this plugin takes no settings")
    return loaded


def _check_names(name: str, plugin: object) -> None:
    """Catch a misspelled hook even when it lacks ``@hookimpl`` (pluggy would ignore it)."""
    known = {n for n in dir(hookspecs) if n.startswith("postdesk_")}
    for attribute in dir(plugin):
        hook = getattr(plugin, attribute, None)
        if attribute.startswith("postdesk_") and attribute not in known and callable(hook):
            raise ConfigError(
                f"plugin {name!r}: unknown hook {attribute!r} (known: {', '.join(sorted(known))})"
            )
