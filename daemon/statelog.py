"""Logging a dependency's state without flooding the log (issue 13, recovery lag).

A change of state (down, or up again) is logged once. While the dependency stays down, or
flaps between down and up, one summary line per ``interval`` says how often it failed and
recovered, with the last error, instead of a line per attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

SUMMARY_SECONDS = 60.0


class StateLog:
    """Logs the ups and downs of one dependency (``what``, e.g. "database")."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        interval: float = SUMMARY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._interval = interval
        self._clock = clock
        self._down_since: float | None = None
        self._quiet_until = 0.0  # while flapping, changes are summarised, not logged one by one
        self._failures = self._recoveries = 0
        self._logged_down = False
        self._last_error = ""

    def failed(self, error: str) -> None:
        """Record a failed attempt."""
        now = self._clock()
        self._last_error = error
        self._failures += 1
        if self._down_since is None:
            self._down_since = now
            self._logged_down = now >= self._quiet_until
            if self._logged_down:
                self._log.error("%s unavailable, deferring work: %s", self._what, error)
                self._quiet_until = now + self._interval
                self._failures = self._recoveries = 0
                return
        self._summarise(now)

    def recovered(self) -> None:
        """Record a successful attempt."""
        if self._down_since is None:
            return
        now = self._clock()
        outage, self._down_since = now - self._down_since, None
        if self._logged_down:
            self._log.warning(
                "%s available again after %.1f s (%d more failed attempt(s))",
                self._what,
                outage,
                self._failures,
            )
            self._failures = 0
            return
        self._recoveries += 1
        self._summarise(now)

    def _summarise(self, now: float) -> None:
        if now < self._quiet_until:
            return
        self._log.error(
            "%s unavailable or unstable: %d failed attempt(s), %d recovery(ies) in the last"
            " %.0f s; last error: %s",
            self._what,
            self._failures,
            self._recoveries,
            self._interval,
            self._last_error,
        )
        self._failures = self._recoveries = 0
        self._quiet_until = now + self._interval
