"""One typed, frozen settings object, loaded once from TOML and the environment.

Precedence: built-in defaults < the TOML file < ``POSTDESK_<SECTION>_<KEY>`` variables.
Every key is documented once, in ``docs/postdesk.example.toml``.
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import ipaddress
import os
import tomllib
import types
import typing
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import make_url

ENV_PREFIX = "POSTDESK_"
BASE_STATES = ("new", "open", "pending", "solved", "closed")  # what clocks and rules use
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
    tls_cert: str = ""  # PEM certificate chain; with tls_key, STARTTLS is offered
    tls_key: str = ""
    require_tls: bool = False  # refuse MAIL before STARTTLS (530 5.7.0)
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
    auto_total_per_hour: int = 300  # automatic mail to all outside addresses together
    notify_attach_max_bytes: int = 10_485_760  # attachments copied into agent notifications
    connections: int = 4  # relay connections used in parallel (32 rows claimed per connection)


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
    lookup_timeout_seconds: float = 2.0  # contact/order lookups and template variables
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # [plugins.<name>] tables


@dataclass(frozen=True)
class ProcessingSettings:
    """The worker that drains the spool."""

    max_attempts: int = 3
    max_mime_depth: int = 50
    max_parts: int = 1000
    max_header_bytes: int = 16_384
    batch_size: int = 50  # messages committed together, each in its own savepoint
    batch_ms: int = 200  # no new message joins a batch after this many milliseconds
    workers: int = 1  # worker processes draining the spool; more than one needs PostgreSQL
    flood_max_new_tickets: int = 20  # new tickets per sender per window; more become notes
    flood_window_minutes: int = 60
    flood_ack_minutes: int = 60  # after the cap, at most one acknowledgement per sender per this


@dataclass(frozen=True)
class ClassifierSettings:
    """The spam and category models (docs/classifier.md)."""

    retrain_every: str = ""  # e.g. "24h": retrain in the background when agents taught; "" = off

    @property
    def retrain_seconds(self) -> float:
        """``retrain_every`` in seconds; 0 when scheduled retraining is off."""
        if not self.retrain_every:
            return 0.0
        from postdesk.daemon.sla.rules import parse_duration  # the parser of every duration

        return parse_duration(self.retrain_every, "classifier.retrain_every").total_seconds()


@dataclass(frozen=True)
class HttpSettings:
    """The optional health and metrics listener."""

    listen: str = ""  # HOST:PORT for /healthz, /readyz and /metrics; empty = off
    reports_token: str = ""  # the token /reports asks for; empty (and no _env) = /reports off
    reports_token_env: str = ""  # or the environment variable holding it


@dataclass(frozen=True)
class LogSettings:
    """How the daemon writes its log."""

    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class ReportSettings:
    """``postdesk report`` and the weekly report mail."""

    timezone: str = "UTC"  # IANA zone in which days, weeks and months begin
    weekly_to: tuple[str, ...] = ()  # recipients of the weekly report mail; empty: not sent


@dataclass(frozen=True)
class WorkflowSettings:
    """The team's own words: status labels over the base states, priority levels, rating words."""

    statuses: dict[str, str] = field(default_factory=dict)  # label -> new|open|pending|...
    priorities: tuple[str, ...] = ("low", "normal", "high", "urgent")  # lowest first
    default_priority: str = "normal"
    rating_words: dict[str, int] = field(default_factory=dict)  # extra CSAT answers -> 1..5

    @property
    def labels(self) -> dict[str, str]:
        """Every status label and its base state; a state without a label under its own name."""
        mapping = dict(self.statuses)
        for state in BASE_STATES:
            if state not in mapping.values():
                mapping[state] = state
        return mapping


@dataclass(frozen=True)
class SlaCalendarSettings:
    """One business calendar of ``[[sla.calendars]]`` (parsed by ``postdesk.daemon.sla.rules``)."""

    name: str = ""
    timezone: str = "UTC"
    hours: str = "24x7"  # or "Mon-Fri 10:00-19:00", or several ranges separated by commas
    holidays: str = ""  # country code for the holidays library, optionally "-SUBDIVISION"
    closed: tuple[str, ...] = ()  # extra closed days, YYYY-MM-DD


@dataclass(frozen=True)
class SlaPolicySettings:
    """One policy of ``[[sla.policies]]``: the first whose ``match`` fits a ticket applies."""

    name: str = ""
    match: dict[str, str] = field(default_factory=dict)  # priority, category, tier, organization
    calendar: str = ""
    first_response: str = "8h"
    resolution: str = "5d"
    escalate_to: str = ""  # group that also gets the breach mail


@dataclass(frozen=True)
class SlaSettings:
    """Service-level targets: calendars, policies, and how often they are checked."""

    check_interval: str = "30s"
    warn_at: float = 0.8  # share of a target at which the warning goes out
    digest_at: str = ""  # "HH:MM": each agent's daily digest of open tickets; "" = off
    digest_timezone: str = ""  # "" = the first calendar's timezone, else UTC
    calendars: tuple[SlaCalendarSettings, ...] = ()
    policies: tuple[SlaPolicySettings, ...] = ()


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
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    log: LogSettings = field(default_factory=LogSettings)
    reports: ReportSettings = field(default_factory=ReportSettings)
    sla: SlaSettings = field(default_factory=SlaSettings)
    workflow: WorkflowSettings = field(default_factory=WorkflowSettings)
    source: str = "built-in defaults"

    @functools.cached_property
    def data_dir(self) -> Path:
        """The folder holding the spool, attachments, outgoing Maildir and SQLite file (one
        ``Path``, made once: the worker asks several times per message)."""
        return Path(self.helpdesk.data_dir)

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL; SQLite in the data dir unless one is configured."""
        return self.helpdesk.database or f"sqlite:///{self.data_dir / 'postdesk.db'}"

    def agent(self, email: str | None) -> Agent | None:
        """The agent with this address, if any."""
        return self._agents_by_address.get((email or "").lower())

    @functools.cached_property
    def _agents_by_address(self) -> dict[str, Agent]:
        """The agents by lower-cased address, the first one listed for an address given twice
        (built once: the worker asks about several addresses per message)."""
        agents: dict[str, Agent] = {}
        for agent in self.agents:
            agents.setdefault(agent.email.lower(), agent)
        return agents


def split_host_port(value: str, key: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 in brackets), naming ``key`` when it is malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"{key}: port {port} is not between 1 and 65535")
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
    plugin_tables = _plugin_tables(data)
    settings: Settings = _build(Settings, data, "")
    settings = dataclasses.replace(
        settings,
        source=chosen or "built-in defaults",
        plugins=dataclasses.replace(settings.plugins, options=plugin_tables),
    )
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


def _plugin_tables(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Take the ``[plugins.<name>]`` tables out of ``data``: each plugin checks its own."""
    section = data.get("plugins")
    if not isinstance(section, dict):
        return {}
    names = [key for key, value in section.items() if isinstance(value, dict)]
    return {name: section.pop(name) for name in names}


def build_section(cls: type[Any], data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from the table at ``where``, with the checks of every section."""
    return _build(cls, data, where)


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
    if cls is PluginSettings:
        known.discard("options")  # the [plugins.<name>] tables, taken out before
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
    settings.classifier.retrain_seconds  # noqa: B018 - raises ConfigError when malformed
    _validate_database(settings.helpdesk.database)
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
    if settings.http.listen:
        split_host_port(settings.http.listen, "http.listen")
    if bool(settings.smtp.tls_cert) != bool(settings.smtp.tls_key):
        raise ConfigError("smtp.tls_cert and smtp.tls_key: give both or neither")
    if settings.smtp.require_tls and not settings.smtp.tls_cert:
        raise ConfigError("smtp.require_tls: needs smtp.tls_cert and smtp.tls_key")
    for positive in ("max_message_bytes", "max_recipients", "idle_timeout", "max_connections"):
        if getattr(settings.smtp, positive) <= 0:
            raise ConfigError(f"smtp.{positive}: must be greater than 0")
    for positive in ("timeout_seconds", "lookup_timeout_seconds"):
        if getattr(settings.plugins, positive) <= 0:
            raise ConfigError(f"plugins.{positive}: must be greater than 0")
    if settings.outbound.connections < 1:
        raise ConfigError("outbound.connections: must be at least 1")
    if settings.outbound.auto_total_per_hour < 0:
        raise ConfigError("outbound.auto_total_per_hour: must not be negative")
    workers = settings.processing.workers
    if workers < 1:
        raise ConfigError("processing.workers: must be at least 1")
    if workers > 1 and not settings.database_url.startswith("postgresql"):
        raise ConfigError(
            "processing.workers: more than one worker needs PostgreSQL"
            " (SQLite lets one process write at a time)"
        )
    if settings.processing.batch_size < 1:
        raise ConfigError("processing.batch_size: must be at least 1")
    if settings.processing.batch_ms < 0:
        raise ConfigError("processing.batch_ms: must not be negative")
    _validate_agents(settings)
    _validate_reports(settings.reports)
    _validate_workflow(settings.workflow)
    _validate_sla(settings)


def _validate_reports(reports: ReportSettings) -> None:
    """The report time zone must be known; the weekly recipients must be addresses."""
    try:
        zoneinfo.ZoneInfo(reports.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"reports.timezone: not a known time zone (e.g. Europe/Berlin): {reports.timezone!r}"
        ) from None
    for index, address in enumerate(reports.weekly_to):
        addr = email.utils.parseaddr(address)[1]
        if "@" not in addr or any(c.isspace() for c in addr):
            raise ConfigError(f"reports.weekly_to[{index}]: not an email address: {address!r}")


DATABASE_FORMS = "sqlite:///PATH or postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/NAME"


def _validate_database(url: str) -> None:
    """ConfigError naming helpdesk.database unless ``url`` is a form postdesk can open."""
    if not url:
        return
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("postgres", "postgresql", "postgresql+psycopg2"):
        problem = f"{scheme}:// needs a driver postdesk does not install"
    elif scheme not in ("sqlite", "postgresql+psycopg"):
        problem = f"{scheme!r} databases are not supported" if scheme else "not a database URL"
    else:
        try:
            make_url(url)
        except Exception:  # sqlalchemy.exc.ArgumentError, ValueError on a bad port
            problem = "malformed URL"
        else:
            return
    raise ConfigError(f"helpdesk.database: {problem}; use {DATABASE_FORMS}")


def _validate_workflow(workflow: WorkflowSettings) -> None:
    """Labels must map onto a base state; priorities must be distinct; ratings 1 to 5."""
    for label, state in workflow.statuses.items():
        if state not in BASE_STATES:
            raise ConfigError(
                f"workflow.statuses.{label!r}: maps to {state!r}, not one of {', '.join(BASE_STATES)}"
            )
        if not label.strip() or '"' in label:
            raise ConfigError(f"workflow.statuses.{label!r}: a label needs words and no quotes")
    levels = [p.lower() for p in workflow.priorities]
    if not levels or len(set(levels)) != len(levels) or any(not p or " " in p for p in levels):
        raise ConfigError("workflow.priorities: needs distinct one-word levels, lowest first")
    if workflow.default_priority.lower() not in levels:
        raise ConfigError(
            f"workflow.default_priority: {workflow.default_priority!r} is not in workflow.priorities"
        )
    for word, score in workflow.rating_words.items():
        if not 1 <= score <= 5 or not word.strip() or " " in word.strip():
            raise ConfigError(f"workflow.rating_words.{word!r}: a word rated 1 to 5")


def _validate_sla(settings: Settings) -> None:
    """Parse ``[sla]`` once so that a wrong calendar or policy stops the start (named key)."""
    from postdesk.daemon.sla.rules import build_rules  # the SLA package builds on this module

    build_rules(settings)


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
