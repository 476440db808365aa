"""Recovery lag, logging half: a state change is logged once, an outage or a flapping
dependency gives one summary line per minute (the disk-full case logged ~10 lines a second)."""

from __future__ import annotations

import logging

import pytest

from postdesk.daemon.statelog import StateLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_outage_logs_down_once_a_summary_per_minute_and_up_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    state = StateLog(logging.getLogger("t"), "database", clock=clock)
    with caplog.at_level(logging.INFO):
        for _ in range(150):  # 150 s down, probed every second
            state.failed("connection refused")
            clock.now += 1
        state.recovered()
    lines = _lines(caplog)
    assert lines[0] == "database unavailable, deferring work: connection refused"
    assert sum("unavailable or unstable" in line for line in lines) == 2
    assert lines[-1].startswith("database available again after 150.0 s")
    assert len(lines) == 4


def test_flapping_is_summarised_not_logged_each_time(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    state = StateLog(logging.getLogger("t"), "database", clock=clock)
    with caplog.at_level(logging.INFO):
        for _ in range(1200):  # 10 down/up pairs a second for two minutes
            state.failed("database or disk is full")
            clock.now += 0.05
            state.recovered()
            clock.now += 0.05
    lines = _lines(caplog)
    assert len(lines) <= 5, lines
    assert "1 recovery" not in " ".join(lines)
    assert any("recovery(ies) in the last 60 s" in line for line in lines)
