"""Agent commands: the ``#name argument`` lines at the top of an agent's reply (SPEC section 5).

:func:`parse_reply` splits a reply into its commands, the errors found in them and the body
that remains. It reads only the top of the reply: blank lines and lines starting with ``#``,
up to the first line of ordinary text. What each command does is in
:mod:`postdesk.daemon.steps.commands`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from postdesk.daemon.outbound.templating import one_line

NO_ARGUMENT = ("note", "spam", "ham")
HABITS = ("requester", "assist", "unassist")  # issue 12: daemon/agents/habits.py
ONE_ARGUMENT = ("status", "priority", "assign", "category", "merge", "cc", "reply", *HABITS)
KNOWN = (*NO_ARGUMENT, *ONE_ARGUMENT)
FREE_TEXT = ("cc", "category")  # may hold spaces: "#cc Frank <frank@example.org>"
QUOTABLE = ("status",)  # may hold spaces when quoted: '#status "Being resolved"'
_QUOTED = re.compile(r"^[\"'\u201c\u201e\u00ab\u2018][^\"\u201c\u201d]+[\"'\u201d\u00bb\u2019]$")
USAGE = {
    "status": "#status new|open|pending|solved|closed",
    "priority": "#priority low|normal|high|urgent",
    "assign": "#assign me|nobody|<agent email or name>",
    "category": "#category <name>",
    "merge": "#merge <ticket number>",
    "cc": "#cc <email>",
    "reply": "#reply <canned reply name>",
    "requester": "#requester <customer email>",
    "assist": "#assist <agent email or name>",
    "unassist": "#unassist <agent email or name>",
}
_LINE = re.compile(r"^#([A-Za-z]+)(?:\s+(.*))?$")


@dataclass(frozen=True)
class Command:
    """One command line: its name (lower case), its argument and the line as written."""

    name: str
    argument: str
    line: str


@dataclass
class Reply:
    """An agent's reply taken apart."""

    commands: list[Command] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    body: str = ""

    def has(self, name: str) -> bool:
        """True when the reply carries command ``name``."""
        return any(command.name == name for command in self.commands)


def parse_reply(text: str) -> Reply:
    """Split ``text`` into the command lines at its top and the body after them."""
    reply = Reply()
    lines = text.replace("\r\n", "\n").split("\n")
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if line and not line.startswith("#"):
            break
        index += 1
        if not line:
            continue
        command, error = parse_line(line)
        if command is not None:
            reply.commands.append(command)
        if error:
            reply.errors.append(error)
    reply.body = "\n".join(lines[index:]).strip("\n")
    return reply


def parse_line(line: str) -> tuple[Command | None, str]:
    """One command line as a Command, or None and what is wrong with it."""
    shown = one_line(line, 100)
    match = _LINE.match(line)
    if match is None:
        return None, f"{shown!r}: not a command (commands look like '#status solved')"
    name, argument = match.group(1).lower(), " ".join((match.group(2) or "").split())
    if name not in KNOWN:
        return None, f"{shown!r}: unknown command #{name} (known: {', '.join(KNOWN)})"
    spaced = " " in argument and name not in FREE_TEXT and not _quoted(name, argument)
    if name in ONE_ARGUMENT and (not argument or spaced):
        return None, f"{shown!r}: expected one value, as in '{USAGE[name]}'"
    if name in ("spam", "ham") and argument:
        return None, f"{shown!r}: #{name} takes no value"
    return Command(name, argument, line), ""


def _quoted(name: str, argument: str) -> bool:
    """True for a quoted argument of a command that takes labels of several words."""
    return name in QUOTABLE and _QUOTED.match(argument) is not None
