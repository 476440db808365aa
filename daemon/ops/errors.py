"""The two ways an operations command fails: it was asked wrongly, or the work went wrong."""

from __future__ import annotations


class OpsUsageError(Exception):
    """The command cannot do what was asked as asked (exit 2); the message says what to change."""


class OpsError(Exception):
    """The command failed while working (exit 1); the message names what failed."""
