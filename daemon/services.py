"""The long-lived helpers every pipeline step may need, built once at start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from postdesk.daemon.agents.tokens import Tokens
from postdesk.daemon.config import Settings
from postdesk.daemon.outbound.releases import Releases
from postdesk.daemon.outbound.templating import Templates
from postdesk.daemon.sla.rules import Rules, build_rules
from postdesk.models.schema import utcnow
from postdesk.plugins.runner import PluginRunner


@dataclass(frozen=True)
class Services:
    """Settings plus the objects derived from them; passed to steps instead of globals."""

    settings: Settings
    tokens: Tokens
    templates: Templates
    clock: Callable[[], datetime] = field(default=utcnow)
    plugins: PluginRunner = field(default_factory=PluginRunner)  # hooks, see docs/plugins.md
    releases: Releases = field(default_factory=Releases)  # held mail completed, in groups

    @cached_property
    def sla(self) -> Rules:
        """The SLA calendars and policies, parsed from the settings once."""
        return build_rules(self.settings)
