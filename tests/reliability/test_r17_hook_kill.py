"""R-17, the kill point inside a pluggy hook: a plugin whose ``postdesk_ticket_created`` kills
its process (``os._exit(137)``), the plugins process, where hooks run under ``serve``.

The message being announced was committed before its hooks ran, and its events were written
to the plugin event journal in the same transaction. So after the plugins process's restart
nothing is lost or doubled (P1-P4), its acknowledgement is queued once, and the killed call is
run again with the same ``event_id``; every other call runs once. A hook that kills its process
every time is dropped after three attempts, and mail keeps flowing.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from postdesk.models.plugin_events import PluginEvent
from tests.reliability.procs import running_daemon
from tests.reliability.properties import SendLog, assert_p1_to_p4
from tests.support import Daemon, wait_until

KILLER = """
import json, os
from postdesk.plugins import hookimpl

@hookimpl
def postdesk_ticket_created(ticket, event_id):
    with open(os.environ["RECORDER_FILE"], "a") as out:
        out.write(json.dumps([ticket["number"], event_id, os.getpid()]) + "\\n")
    marker = os.environ["KILL_MARKER"]
    if ticket["number"] == 1 and (os.environ["KILL_ALWAYS"] or not os.path.exists(marker)):
        open(marker, "w").close()
        os._exit(137)
"""


def _killer_daemon(tmp_path: Path, database_url: str, always: bool) -> tuple[Daemon, Path]:
    (tmp_path / "killer.py").write_text(KILLER)
    recorded = tmp_path / "created.jsonl"
    env = {
        "PYTHONPATH": str(tmp_path),
        "RECORDER_FILE": str(recorded),
        "KILL_MARKER": str(tmp_path / "killed"),
        "KILL_ALWAYS": "1" if always else "",
    }
    extra = '[plugins]\nenabled = ["killer"]\n'
    return running_daemon(tmp_path, database_url, extra=extra, env=env), recorded


def _calls(recorded: Path) -> list[tuple[int, str, int]]:
    """(ticket number, event_id, process id) of every call the plugin saw."""
    lines = recorded.read_text().splitlines() if recorded.exists() else []
    return [tuple(json.loads(line)) for line in lines]  # type: ignore[misc]


def _send_and_check(daemon: Daemon, kills: int) -> dict[str, int]:
    log = SendLog()
    assert log.send_new(daemon.port, "first", 0) == 250
    wait_until(
        lambda: daemon.log().count("plugins process exited with 137") >= kills, what="the kills"
    )
    for n in range(1, 6):
        assert log.send_new(daemon.port, "after", n) == 250
    figures = assert_p1_to_p4(daemon, log, timeout=60)
    assert figures == {
        "sent": 6,
        "250": 6,
        "stored": 6,
        "quarantined": 0,
        "duplicates": 0,
        "lost": 0,
    }
    assert sorted(t["number"] for t in daemon.tickets()) == [1, 2, 3, 4, 5, 6]
    acks = Counter(r.ticket_id for r in daemon.outbox() if r.kind == "acknowledgement")
    assert sorted(acks.values()) == [1] * 6, "one acknowledgement per ticket"
    return figures


def test_r17_kill_inside_a_plugin_hook_reruns_it_with_the_same_event_id(
    tmp_path: Path, database_url: str
) -> None:
    started, recorded = _killer_daemon(tmp_path, database_url, always=False)
    with started as daemon:
        figures = _send_and_check(daemon, kills=1)
        wait_until(
            lambda: [n for n, _key, _pid in _calls(recorded)].count(1) == 2,
            what="the killed call run again",
        )
        wait_until(lambda: {n for n, *_ in _calls(recorded)} >= {2, 3, 4, 5, 6}, what="the rest")
        calls = _calls(recorded)
        first = [(key, pid) for n, key, pid in calls if n == 1]
        assert first[0][0] == first[1][0], f"the re-run carries the same event_id: {first}"
        assert first[0][1] != first[1][1], "the re-run is the restarted process's"
        numbers = Counter(n for n, *_ in calls)
        assert all(numbers[n] == 1 for n in range(2, 7)), f"every other call ran once: {numbers}"
        assert len({key for _n, key, _pid in calls}) == 6, "one event_id per ticket"
        assert daemon.log().count("plugins process exited with 137") == 1
        assert "worker process exited" not in daemon.log(), "no worker ran the hook"
        assert "re-run (attempt 2)" in daemon.log()
        wait_until(lambda: _journal_rows(daemon) == 0, what="the answered events forgotten")
    print(f"R-17 hook kill figures: {figures}")


def test_r17_a_hook_that_kills_its_process_every_time_is_dropped_after_three_attempts(
    tmp_path: Path, database_url: str
) -> None:
    started, recorded = _killer_daemon(tmp_path, database_url, always=True)
    with started as daemon:
        _send_and_check(daemon, kills=3)
        wait_until(lambda: "dropped: its process died 3 times" in daemon.log(), what="the drop")
        wait_until(lambda: {n for n, *_ in _calls(recorded)} >= {2, 3, 4, 5, 6}, what="the rest")
        assert [n for n, *_ in _calls(recorded)].count(1) == 3
        assert daemon.log().count("plugins process exited with 137") == 3
        wait_until(lambda: _journal_rows(daemon) == 0, what="the journal emptied")


def _journal_rows(daemon: Daemon) -> int:
    """Rows in the plugin event journal (events not yet answered by every plugin)."""
    return daemon.count(PluginEvent)
