"""postdesk-hello: append a line per new ticket to a file; offer {{ plugins.greeting }}."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postdesk.plugins import hookimpl
from postdesk.plugins.host import PluginContext


@dataclass(frozen=True)
class HelloSettings:
    """[plugins.hello]"""

    log_file: str = "hello-tickets.log"
    greeting: str = "Hello"


class Hello:
    def __init__(self, settings: HelloSettings) -> None:
        self.settings = settings

    @hookimpl
    def postdesk_ticket_created(self, ticket: Any) -> None:
        """Called after commit for each new ticket (in a worker thread: blocking is fine)."""
        with Path(self.settings.log_file).open("a", encoding="utf-8") as log:
            log.write(f"{ticket['tag']} {ticket['requester']} {ticket['subject']}\n")

    @hookimpl
    async def postdesk_template_variables(self, template: str, ticket: Any) -> dict[str, Any]:
        """Templates may write {{ plugins.greeting }}."""
        return {"greeting": self.settings.greeting}


def create_plugin(context: PluginContext) -> Hello:
    """Called once at start-up with the [plugins.hello] table (checked: unknown keys fail)."""
    return Hello(context.options_as(HelloSettings))
