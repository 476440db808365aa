"""The team's own vocabulary: status labels over the five base states, and priority levels.

``[workflow] statuses`` maps labels ("Being resolved") onto the base states the clocks and
rules use (``new, open, pending, solved, closed``). A base state without a label is shown
under its own name, so the defaults keep today's words. The ticket keeps its base state in
``status`` and the label shown in ``status_label``.
"""

from __future__ import annotations

import re

from postdesk.daemon.config import BASE_STATES, Settings
from postdesk.models.schema import Ticket

_QUOTES = "\"'\u201c\u201d\u201e\u00ab\u00bb\u2018\u2019"
_SEPARATORS = re.compile(r"[\s_-]+")


def normalize(text: str) -> str:
    """A label as typed, made comparable: quotes gone, case folded, ``-``/``_`` as spaces."""
    return _SEPARATORS.sub(" ", text.strip().strip(_QUOTES)).strip().casefold()


def labels(settings: Settings) -> dict[str, str]:
    """Every label and its base state, base states without a label under their own name."""
    return settings.workflow.labels


def default_label(settings: Settings, state: str) -> str:
    """The label a ticket gets when it reaches ``state`` without an agent naming one."""
    return next((label for label, base in labels(settings).items() if base == state), state)


def find_status(settings: Settings, typed: str) -> tuple[str, str] | None:
    """The (label, base state) an agent means by ``typed``, or None.

    Labels match case-insensitively, quoted or hyphenated; a base state's own name always
    works and gives that state's first label.
    """
    wanted = normalize(typed)
    for label, state in labels(settings).items():
        if normalize(label) == wanted:
            return label, state
    if wanted in BASE_STATES:
        return default_label(settings, wanted), wanted
    return None


def settle(settings: Settings, ticket: Ticket) -> None:
    """Make the ticket's label and priority valid for its state and the configured levels."""
    known = labels(settings)
    if ticket.status_label is None or known.get(ticket.status_label) != ticket.status:
        ticket.status_label = default_label(settings, ticket.status)
    levels = [p.lower() for p in settings.workflow.priorities]
    if (ticket.priority or "").lower() not in levels:
        ticket.priority = settings.workflow.default_priority.lower()
