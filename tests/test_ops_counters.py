"""Worker counts cross the process boundary as one file per worker process, added up by serve."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from postdesk.daemon.ops.counters import CountsRecorder, WorkerCounts, counts_path, read_counts
from postdesk.daemon.workerproc import COUNTS_SECONDS, ThrottledCounts


def _write(data_dir: Path, worker_pid: int, counts: WorkerCounts) -> None:
    counts_path(data_dir, worker_pid).write_text(json.dumps(asdict(counts)))


def test_counts_of_several_workers_add_up_and_another_serves_are_ignored(tmp_path: Path) -> None:
    first = WorkerCounts(serve_pid=100, outcomes={"stored": 3, "held": 1}, seconds_sum=0.5)
    first.buckets[0] = 4
    second = WorkerCounts(serve_pid=100, outcomes={"stored": 2}, seconds_sum=0.25)
    second.buckets[1] = 2
    stale = WorkerCounts(serve_pid=99, outcomes={"stored": 1000})
    _write(tmp_path, 11, first)
    _write(tmp_path, 12, second)
    _write(tmp_path, 13, stale)

    total = read_counts(tmp_path, serve_pid=100)
    assert total.outcomes == {"stored": 5, "held": 1}
    assert total.observed == 6 and total.seconds_sum == 0.75
    assert read_counts(tmp_path, serve_pid=99).outcomes == {"stored": 1000}


def test_a_new_worker_removes_files_of_an_earlier_serve_and_publishes_its_own(
    tmp_path: Path,
) -> None:
    _write(tmp_path, 13, WorkerCounts(serve_pid=99, outcomes={"stored": 7}))
    _write(tmp_path, 14, WorkerCounts(serve_pid=100, outcomes={"stored": 2}))
    recorder = CountsRecorder(tmp_path, serve_pid=100)
    assert not counts_path(tmp_path, 13).exists(), "an earlier serve's counts are gone"
    recorder.count("stored", 0.01)
    recorder.publish()
    assert counts_path(tmp_path, os.getpid()).exists()
    assert read_counts(tmp_path).outcomes == {"stored": 3}, "a dead worker's counts still count"


def test_counting_writes_nothing_until_the_counts_are_published(tmp_path: Path) -> None:
    recorder = CountsRecorder(tmp_path, serve_pid=100)
    recorder.count("stored", 0.01)
    recorder.count("held", 0.02)
    assert not counts_path(tmp_path, os.getpid()).exists(), "no file rewrite per message"
    recorder.publish()
    assert read_counts(tmp_path).outcomes == {"stored": 1, "held": 1}


def test_a_busy_worker_publishes_at_most_every_interval_and_at_once_before_waiting(
    tmp_path: Path,
) -> None:
    now = [1000.0]
    recorder = CountsRecorder(tmp_path, serve_pid=100)
    published = ThrottledCounts(recorder, clock=lambda: now[0])
    path = counts_path(tmp_path, os.getpid())

    recorder.count("stored", 0.01)
    published.batch_done()
    assert not path.exists(), "a batch soon after the start does not rewrite the file"
    now[0] += COUNTS_SECONDS
    recorder.count("stored", 0.01)
    published.batch_done()
    assert read_counts(tmp_path).outcomes == {"stored": 2}, "published once the interval passed"

    recorder.count("held", 0.01)
    published.batch_done()
    assert read_counts(tmp_path).outcomes == {"stored": 2}, "not again within the interval"
    published.idle()
    assert read_counts(tmp_path).outcomes == {"stored": 2, "held": 1}, "at once before waiting"

    path.unlink()
    published.idle()
    assert not path.exists(), "nothing counted since: nothing rewritten"
