"""One typed, frozen settings object, loaded once from TOML and the environment.

Precedence: built-in defaults < the TOML file < ``POSTDESK_<SECTION>_<KEY>`` variables.
Every key is documented once, in ``docs/postdesk.example.toml``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ENV_PREFIX = "POSTDESK_"
DEFAULT_CONFIG_FILE = "postdesk.toml"


class ConfigError(Exception):
    """A configuration key or value is wrong; the message names it and says what to fix."""


@dataclass(frozen=True)
class HelpdeskSettings:
    """Who the helpdesk is and where it keeps its state."""

    name: str = "Support"
    address: str = "support@localhost"
    aliases: tuple[str, ...] = ()
    tag: str = "Support"
    database: str = ""  # empty: sqlite under data_dir
    data_dir: str = "postdesk-data"
    reopen_days: int = 14
    secret: str = ""
    secret_env: str = ""
    templates_dir: str = ""  # templates here override the built-in ones of the same name

    @property
    def addresses(self) -> frozenset[str]:
        """Every address mail to the helpdesk may be sent to, lower-cased."""
        return frozenset(a.lower() for a in (self.address, *self.aliases))

    @property
    def domain(self) -> str:
        """The domain of the helpdesk address, used for generated Message-IDs."""
        return self.address.rpartition("@")[2] or "localhost"


@dataclass(frozen=True)
class SmtpSettings:
    """The inbound SMTP server."""

    listen: str = "127.0.0.1:2525"
    max_message_bytes: int = 26_214_400
    max_recipients: int = 100
    idle_timeout: int = 60
    max_line_length: int = 100_000
    spool_high_water: int = 50_000
    max_connections: int = 200

    @property
    def host_port(self) -> tuple[str, int]:
        """The listen address split into host and port."""
        return split_host_port(self.listen, "smtp.listen")


@dataclass(frozen=True)
class ImapMailbox:
    """One IMAP mailbox that is polled for new mail."""

    name: str = "main"
    host: str = "127.0.0.1"
    port: int = 993
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str = ""
    password: str = ""
    password_env: str = ""
    folder: str = "INBOX"
    after: Literal["move", "flag"] = "flag"
    move_to: str = "Processed"
    poll_seconds: int = 60
    idle: bool = True
    batch_size: int = 200
    verify_tls: bool = True


@dataclass(frozen=True)
class OutboundSettings:
    """How outgoing mail leaves: an SMTP relay, or files in the data dir."""

    relay: str = ""  # smtp://host:port, smtps://host:port, or empty for the Maildir
    username: str = ""
    password: str = ""
    password_env: str = ""
    max_attempts: int = 12
    retry_base_seconds: float = 30.0
    auto_per_recipient_10min: int = 10
    auto_per_recipient_day: int = 40
    notify_attach_max_bytes: int = 10_485_760  # attachments copied into agent notifications


@dataclass(frozen=True)
class Agent:
    """A person who answers tickets from their own mail client."""

    email: str
    name: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthSettings:
    """Whose word is believed about who sent a mail."""

    trusted_authserv_ids: tuple[str, ...] = ()
    trusted_relays: tuple[str, ...] = ()  # SMTP peers (IPs or networks) whose A-R we believe
    token_max_age_days: float = 30.0  # an agent's HMAC token older than this is not believed


@dataclass(frozen=True)
class RoutingSettings:
    """Which group a ticket's category belongs to, and which groups assign automatically."""

    categories: dict[str, str] = field(default_factory=dict)  # category -> group
    round_robin: tuple[str, ...] = ()  # groups whose new tickets are assigned in turn
    default_group: str = ""  # group of new tickets whose category maps to none


@dataclass(frozen=True)
class PluginSettings:
    """Which plugins load, and how long each hook call may take."""

    enabled: tuple[str, ...] = ()
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class ProcessingSettings:
    """The worker that drains the spool."""

    max_attempts: int = 3
    max_mime_depth: int = 50
    max_parts: int = 1000
    max_header_bytes: int = 16_384
    flood_max_new_tickets: int = 20  # new tickets per sender per window; more become notes
    flood_window_minutes: int = 60
    flood_ack_minutes: int = 60  # after the cap, at most one acknowledgement per sender per this


@dataclass(frozen=True)
class Settings:
    """Everything the daemon is told, in one frozen object passed to whoever needs it."""

    helpdesk: HelpdeskSettings = field(default_factory=HelpdeskSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    imap: tuple[ImapMailbox, ...] = ()
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    agents: tuple[Agent, ...] = ()
    auth: AuthSettings = field(default_factory=AuthSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    plugins: PluginSettings = field(default_factory=PluginSettings)
    processing: ProcessingSettings = field(default_factory=ProcessingSettings)
    source: str = "built-in defaults"

    @property
    def data_dir(self) -> Path:
        """The folder holding the spool, attachments, outgoing Maildir and SQLite file."""
        return Path(self.helpdesk.data_dir)

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL; SQLite in the data dir unless one is configured."""
        return self.helpdesk.database or f"sqlite:///{self.data_dir / 'postdesk.db'}"

    def agent(self, email: str | None) -> Agent | None:
        """The agent with this address, if any."""
        wanted = (email or "").lower()
        return next((a for a in self.agents if a.email.lower() == wanted), None)


def split_host_port(value: str, key: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 in brackets), naming ``key`` when it is malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def load_settings(
    path: str | None = None, environ: typing.Mapping[str, str] | None = None
) -> Settings:
    """Load settings from ``path`` (or POSTDESK_CONFIG, or ./postdesk.toml) plus the environment."""
    env = os.environ if environ is None else environ
    chosen = path or env.get("POSTDESK_CONFIG") or None
    if chosen is None and Path(DEFAULT_CONFIG_FILE).is_file():
        chosen = DEFAULT_CONFIG_FILE
    data: dict[str, Any] = {}
    if chosen is not None:
        data = _read_toml(Path(chosen))
    _apply_environment(data, env)
    settings: Settings = _build(Settings, data, "")
    settings = dataclasses.replace(settings, source=chosen or "built-in defaults")
    _validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _apply_environment(data: dict[str, Any], env: typing.Mapping[str, str]) -> None:
    """Overlay POSTDESK_<SECTION>_<KEY> variables onto table sections of ``data``."""
    tables = {
        f.name: f.type
        for f in dataclasses.fields(Settings)
        if f.name not in ("imap", "agents", "source")
    }
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == "POSTDESK_CONFIG":
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section = next((s for s in tables if rest.startswith(s + "_")), None)
        if section is None:
            continue
        key = rest[len(section) + 1 :]
        data.setdefault(section, {})[key] = _env_value(raw)


def _env_value(raw: str) -> Any:
    """Read an environment value as a TOML value when it is one, else as a plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _build(cls: type[Any], data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a TOML table, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown key {_join(where, unknown[0])!r} (known: {', '.join(sorted(known))})"
        )
    values = {key: _coerce(hints[key], value, _join(where, key)) for key, value in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``hint`` and convert lists to tuples."""
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        item_hint = typing.get_args(hint)[1]
        return {str(k): _coerce(item_hint, v, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        return value
    expected = {float: (int, float)}.get(hint, hint)
    if (hint is int and isinstance(value, bool)) or not isinstance(value, expected):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    return float(value) if hint is float else value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _validate(settings: Settings) -> None:
    """Cross-field checks the types alone cannot express."""
    settings.smtp.host_port  # noqa: B018 - raises ConfigError when malformed
    if "@" not in settings.helpdesk.address:
        raise ConfigError(f"helpdesk.address: not an email address: {settings.helpdesk.address!r}")
    if not settings.helpdesk.tag.strip() or any(c in settings.helpdesk.tag for c in "[]#"):
        raise ConfigError("helpdesk.tag: must be a non-empty word without [, ] or #")
    names = [m.name for m in settings.imap]
    if len(set(names)) != len(names):
        raise ConfigError("imap: every [[imap]] mailbox needs a distinct name")
    relay = settings.outbound.relay
    if relay and not relay.startswith(("smtp://", "smtps://")):
        raise ConfigError(
            f"outbound.relay: expected smtp://HOST:PORT or smtps://HOST:PORT, got {relay!r}"
        )
    for positive in ("max_message_bytes", "max_recipients", "idle_timeout", "max_connections"):
        if getattr(settings.smtp, positive) <= 0:
            raise ConfigError(f"smtp.{positive}: must be greater than 0")
    _validate_agents(settings)


def _validate_agents(settings: Settings) -> None:
    """Checks of the keys that decide who is an agent and who gets a ticket."""
    for positive in ("flood_max_new_tickets", "flood_window_minutes", "flood_ack_minutes"):
        if getattr(settings.processing, positive) <= 0:
            raise ConfigError(f"processing.{positive}: must be greater than 0")
    if settings.auth.token_max_age_days <= 0:
        raise ConfigError("auth.token_max_age_days: must be greater than 0")
    for index, relay in enumerate(settings.auth.trusted_relays):
        try:
            ipaddress.ip_network(relay, strict=False)
        except ValueError:
            raise ConfigError(
                f"auth.trusted_relays[{index}]: not an IP address or network: {relay!r}"
            ) from None
    groups = {group for agent in settings.agents for group in agent.groups}
    for group in settings.routing.round_robin:
        if group not in groups:
            raise ConfigError(f"routing.round_robin: no agent is in group {group!r}")


def secret_value(inline: str, env_name: str, key: str) -> str:
    """Resolve a secret given inline or as ``*_env = "VAR"``; raise ConfigError when VAR is unset."""
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise ConfigError(f"{key}_env: environment variable {env_name} is not set")
        return value
    return inline
