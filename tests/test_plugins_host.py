"""The plugin host: loading errors name what is wrong (exit 2), and the calling facade."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pluggy
import pytest

from postdesk.plugins import PROJECT, hookimpl, hookspecs
from postdesk.plugins.facade import Hooks
from postdesk.plugins.host import PluginHost
from postdesk.plugins.runner import PluginRunner
from postdesk.plugins.snapshots import freeze
from tests.support import count_tasks, write_config


def _manager(*plugins: object) -> pluggy.PluginManager:
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    for index, plugin in enumerate(plugins):
        manager.register(plugin, name=f"p{index}")
    return manager


class Answers:
    """A plain implementation answering at once."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    @hookimpl
    def postdesk_lookup_contact(self, email: str) -> Any:
        return self.answer

    @hookimpl
    def postdesk_lookup_orders(self, email: str, text: str) -> Any:
        return self.answer


class AnswersLater:
    """An ``async def`` implementation answering after ``delay`` seconds."""

    def __init__(self, answer: Any, delay: float) -> None:
        self.answer, self.delay = answer, delay

    @hookimpl
    async def postdesk_lookup_contact(self, email: str) -> Any:
        await asyncio.sleep(self.delay)
        return self.answer

    @hookimpl
    async def postdesk_lookup_orders(self, email: str, text: str) -> Any:
        await asyncio.sleep(self.delay)
        return self.answer


class Raises:
    @hookimpl
    def postdesk_lookup_contact(self, email: str) -> Any:
        raise RuntimeError("CRM is down")

    @hookimpl
    async def postdesk_lookup_orders(self, email: str, text: str) -> Any:
        raise RuntimeError("shop is down")


class Blocks:
    """Plain code that blocks its thread (a synchronous HTTP call, say)."""

    @hookimpl
    def postdesk_lookup_contact(self, email: str) -> Any:
        time.sleep(1.0)
        return {"name": "too late"}


def test_first_answer_wins_in_plugin_order_with_async_implementations() -> None:
    # pluggy calls the last registered first. An async implementation returning None must not
    # count as an answer (pluggy's firstresult would stop at its coroutine object).
    hooks = Hooks(_manager(Answers({"name": "from sync"}), AnswersLater(None, 0.05)), 2.0)
    assert asyncio.run(hooks.first("postdesk_lookup_contact", email="a@b.c")) == {
        "name": "from sync"
    }
    # An earlier plugin's answer wins even when a later one answers sooner.
    hooks = Hooks(_manager(Answers({"name": "fast"}), AnswersLater({"name": "slow"}, 0.1)), 2.0)
    assert asyncio.run(hooks.first("postdesk_lookup_contact", email="a@b.c")) == {"name": "slow"}


def test_a_raising_plugin_is_skipped_counted_and_the_others_answer() -> None:
    hooks = Hooks(_manager(Answers([{"number": "1"}]), Raises()), 2.0)
    assert asyncio.run(hooks.first("postdesk_lookup_contact", email="a@b.c")) == [{"number": "1"}]
    assert asyncio.run(hooks.collect("postdesk_lookup_orders", email="a", text="t")) == [
        [{"number": "1"}]
    ]
    assert hooks.failures["p1"] == 2


def test_hanging_and_blocking_plugins_cost_at_most_the_timeout_and_never_stall_the_loop() -> None:
    hooks = Hooks(_manager(AnswersLater({"name": "never"}, 60), Blocks(), Answers(None)), 0.3)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def scenario() -> tuple[Any, float]:
        task = asyncio.create_task(ticker())
        started = time.monotonic()
        answer = await hooks.first("postdesk_lookup_contact", email="a@b.c")
        elapsed = time.monotonic() - started
        task.cancel()
        return answer, elapsed

    answer, elapsed = asyncio.run(scenario())
    assert answer is None
    assert elapsed < 0.9, "a hung plugin must be cut off at the timeout"
    assert ticks >= 10, "blocking plugin code ran on the event loop"
    assert hooks.failures == {"p0": 1, "p1": 1}
    hooks.close()


def test_a_lone_implementation_is_called_without_a_task_of_its_own_and_still_cut_off() -> None:
    # One implementation has nothing to run concurrently with: it is awaited in the caller's
    # task (cheaper), yet a hanging one is still cut off at its timeout and counted.
    hooks = Hooks(_manager(AnswersLater({"name": "never"}, 60)), 0.2)

    async def scenario() -> tuple[Any, Any, list[str]]:
        created = count_tasks(asyncio.get_running_loop())
        first = await hooks.first("postdesk_lookup_contact", email="a@b.c")
        collected = await hooks.collect("postdesk_lookup_orders", email="a", text="t")
        return first, collected, list(created)

    assert asyncio.run(scenario()) == (None, [], [])
    assert hooks.failures == {"p0": 2}


def test_a_lookup_asks_contact_and_orders_at_once_in_few_tasks() -> None:
    plugin = Answers([{"number": "1"}])  # a plain contact card and orders in one
    manager = _manager(plugin)
    runner = PluginRunner(PluginHost(manager, Hooks(manager, 2.0), {"p0": plugin}))
    try:
        created = count_tasks(runner._running_loop())
        facts = runner.facts(runner.lookup("carol@example.org", "order 1"))
        assert facts == {"contact": [{"number": "1"}], "orders": [{"number": "1"}]}
        assert len(created) <= 3, created  # the lookup, its gathering, the shared contact
        created.clear()  # the contact card is cached by address now
        assert runner.facts(runner.lookup("carol@example.org", "order 2")) == facts
        assert len(created) <= 2, created
    finally:
        runner.close()


def test_snapshots_are_read_only() -> None:
    snapshot = freeze({"number": 1, "participants": ["a@b.c"], "nested": {"x": 1}})
    with pytest.raises(TypeError):
        snapshot["number"] = 2  # type: ignore[index]
    assert snapshot["participants"] == ("a@b.c",)
    with pytest.raises(TypeError):
        snapshot["nested"]["x"] = 2  # type: ignore[index]


def _check(
    tmp_path: Path, plugins: str, module: str = "", command: str = "check"
) -> subprocess.CompletedProcess[str]:
    """``postdesk check`` (or serve) with ``plugins`` config and a plugin module ``myplugin``."""
    (tmp_path / "myplugin.py").write_text(textwrap.dedent(module))
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'pd.db'}", extra=plugins)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), command],
        capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path,
    )  # fmt: skip


ENABLED = '[plugins]\nenabled = ["myplugin"]\n'


@pytest.mark.parametrize(
    ("module", "named"),
    [
        (
            "from postdesk.plugins import hookimpl\n@hookimpl\ndef postdesk_tickt_created(ticket): pass\n",
            "postdesk_tickt_created",
        ),
        ("def postdesk_notfy(event, ticket): pass\n", "postdesk_notfy"),
    ],
)
def test_a_misspelled_hook_fails_check_and_serve_naming_it(
    tmp_path: Path, module: str, named: str
) -> None:
    for command in ("check", "serve"):
        result = _check(tmp_path, ENABLED, module, command)
        assert result.returncode == 2, result.stderr
        assert named in result.stderr and "Traceback" not in result.stderr


def test_a_plugin_that_does_not_import_fails_check(tmp_path: Path) -> None:
    result = _check(tmp_path, '[plugins]\nenabled = ["postdesk.plugins.nonexistent"]\n')
    assert result.returncode == 2
    assert "plugins.enabled[0]" in result.stderr and "postdesk.plugins.nonexistent" in result.stderr


def test_bad_or_orphaned_plugin_settings_fail_check_naming_the_key(tmp_path: Path) -> None:
    result = _check(tmp_path, ENABLED + "[plugins.myplugin]\ncolour = 'red'\n", "X = 1\n")
    assert result.returncode == 2 and "plugins.myplugin" in result.stderr
    crm = '[plugins]\nenabled = ["postdesk.plugins.crm"]\n[plugins.crm]\ndefault_region = "XX"\n'
    result = _check(tmp_path, crm)
    assert result.returncode == 2 and "plugins.crm.default_region" in result.stderr
    result = _check(
        tmp_path, crm.replace('default_region = "XX"', "tier_priority = { gold = 'hot' }")
    )
    assert result.returncode == 2 and "plugins.crm.tier_priority.gold" in result.stderr
    result = _check(tmp_path, '[plugins.crn]\ndefault_region = "RU"\n')
    assert result.returncode == 2 and "plugins.crn" in result.stderr


def test_a_good_plugin_is_listed_by_check(tmp_path: Path) -> None:
    module = "from postdesk.plugins import hookimpl\n@hookimpl\ndef postdesk_ticket_created(ticket): pass\n"
    result = _check(tmp_path, ENABLED, module)
    assert "ok    plugins: myplugin" in result.stdout, result.stderr


QUICK = """
import time
from postdesk.plugins import hookimpl

@hookimpl
def postdesk_lookup_orders(email, text):
    time.sleep(30)  # hangs, as a synchronous call to a dead API would
    return [{"number": "from quick"}]
"""

PATIENT = """
import asyncio
from postdesk.plugins import hookimpl

@hookimpl
async def postdesk_lookup_orders(email, text):
    await asyncio.sleep(1.0)
    return [{"number": "from patient"}]
"""


def test_each_plugin_has_its_own_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from postdesk.daemon.config import load_settings
    from postdesk.plugins.host import load_plugins
    from postdesk.plugins.runner import PluginRunner

    (tmp_path / "quick.py").write_text(QUICK)
    (tmp_path / "patient.py").write_text(PATIENT)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = (
        '[plugins]\nenabled = ["quick", "patient"]\nlookup_timeout_seconds = 0.5\n'
        "[plugins.quick]\nlookup_timeout_seconds = 0.3\n"
        "[plugins.patient]\nlookup_timeout_seconds = 3\nevent_timeout_seconds = 20\n"
    )
    settings = load_settings(str(write_config(tmp_path, "sqlite://", extra=plugins)))
    runner = PluginRunner(load_plugins(settings))
    try:
        started = time.monotonic()
        facts = runner.facts(runner.lookup("carol@example.org", "where is my order?"))
        elapsed = time.monotonic() - started
        hooks = runner.hooks
        assert hooks is not None
        # The hanging plugin is cut off at its own 0.3 s; the patient one answers after 1 s,
        # beyond the default of 0.5 s, within its own 3 s.
        assert facts == {"orders": [{"number": "from patient"}]}
        assert 1.0 <= elapsed < 2.5
        assert hooks.failures == {"quick": 1}
        assert hooks.limit("patient", "postdesk_notify") == 20
        assert hooks.limit("quick", "postdesk_notify") == settings.plugins.timeout_seconds
    finally:
        runner.close()


def test_bad_plugin_timeouts_fail_check_naming_the_key(tmp_path: Path) -> None:
    module = "from postdesk.plugins import hookimpl\n@hookimpl\ndef postdesk_notify(event): pass\n"
    for value in ("'soon'", "0", "-1", "true"):
        table = f"[plugins.myplugin]\nevent_timeout_seconds = {value}\n"
        result = _check(tmp_path, ENABLED + table, module)
        assert result.returncode == 2, result.stdout
        assert "plugins.myplugin.event_timeout_seconds" in result.stderr
    result = _check(tmp_path, ENABLED + "timeout_seconds = 0\n", module)
    assert result.returncode == 2 and "plugins.timeout_seconds" in result.stderr
    # The timeouts are the host's: a plugin without settings of its own may still have them.
    table = "[plugins.myplugin]\nlookup_timeout_seconds = 1.5\n"
    result = _check(tmp_path, ENABLED + table, module)
    assert "ok    plugins: myplugin" in result.stdout, result.stderr
