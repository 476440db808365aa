"""The team's own vocabulary: status labels over the five base states, and priority levels.

``[workflow] statuses`` maps labels ("Being resolved") onto the base states the clocks and
rules use (``new, open, pending, solved, closed``). A base state without a label is shown
under its own name, so the defaults keep today's words. The ticket keeps its base state in
``status`` and the label shown in ``status_label``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postdesk.daemon.config import BASE_STATES, Settings, WorkflowSettings
from postdesk.models.schema import Ticket

_QUOTES = "\"'\u201c\u201d\u201e\u00ab\u00bb\u2018\u2019"
_SEPARATORS = re.compile(r"[\s_-]+")


def normalize(text: str) -> str:
    """A label as typed, made comparable: quotes gone, case folded, ``-``/``_`` as spaces."""
    return _SEPARATORS.sub(" ", text.strip().strip(_QUOTES)).strip().casefold()


@dataclass(frozen=True)
class _Vocabulary:
    """What the workflow settings say, worked out once per settings object (they never change)."""

    workflow: WorkflowSettings  # whose words these are (held: its id is not reused meanwhile)
    labels: dict[str, str]  # every label -> its base state
    defaults: dict[str, str]  # base state -> its first label
    levels: frozenset[str]  # the priority levels, lower-cased


_VOCABULARIES: dict[int, _Vocabulary] = {}


def _vocabulary(settings: Settings) -> _Vocabulary:
    """The vocabulary of ``settings.workflow``, computed the first time it is asked for."""
    workflow = settings.workflow
    found = _VOCABULARIES.get(id(workflow))
    if found is None or found.workflow is not workflow:
        known = workflow.labels
        defaults: dict[str, str] = {}
        for label, base in known.items():
            defaults.setdefault(base, label)
        levels = frozenset(p.lower() for p in workflow.priorities)
        found = _VOCABULARIES[id(workflow)] = _Vocabulary(workflow, known, defaults, levels)
    return found


def labels(settings: Settings) -> dict[str, str]:
    """Every label and its base state, base states without a label under their own name
    (shared: not to be changed)."""
    return _vocabulary(settings).labels


def default_label(settings: Settings, state: str) -> str:
    """The label a ticket gets when it reaches ``state`` without an agent naming one."""
    return _vocabulary(settings).defaults.get(state, state)


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
    vocabulary = _vocabulary(settings)
    if ticket.status_label is None or vocabulary.labels.get(ticket.status_label) != ticket.status:
        ticket.status_label = default_label(settings, ticket.status)
    if (ticket.priority or "").lower() not in vocabulary.levels:
        ticket.priority = settings.workflow.default_priority.lower()
