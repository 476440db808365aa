"""What the worker processes have done, shared with ``serve`` through small JSON files.

Workers run in their own processes, so their counts cannot live in serve's memory. After each
batch of messages a worker rewrites its own ``<data_dir>/worker-counts.<pid>.json`` (write to a
temporary name, then rename: a reader sees the old or the new file, never half of one); readers add up
the files of one serve. No fsync: these are statistics, and a restart of serve starts them
afresh (each file carries serve's pid; files of an earlier serve are ignored and removed when a
worker starts), which Prometheus handles as a counter reset.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("postdesk.ops")

FILE_GLOB = "worker-counts.*.json"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class WorkerCounts:
    """Outcomes by disposition, and a latency histogram (counts per bucket, +Inf last)."""

    serve_pid: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    seconds_sum: float = 0.0

    @property
    def observed(self) -> int:
        """How many messages were timed."""
        return sum(self.buckets)


def counts_path(data_dir: Path, worker_pid: int) -> Path:
    """Where one worker process keeps its counts."""
    return data_dir / f"worker-counts.{worker_pid}.json"


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile
        return 0.0


def _load(path: Path) -> WorkerCounts | None:
    try:
        return WorkerCounts(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def read_counts(data_dir: Path, serve_pid: int | None = None) -> WorkerCounts:
    """The workers' counts added up: those of ``serve_pid``, or of the newest serve's files;
    zeros when there are none."""
    files = sorted(data_dir.glob(FILE_GLOB), key=_modified, reverse=True)
    loaded = [c for c in map(_load, files) if c is not None]
    if serve_pid is None:
        serve_pid = loaded[0].serve_pid if loaded else 0
    total = WorkerCounts(serve_pid=serve_pid)
    for counts in loaded:
        if counts.serve_pid != serve_pid:
            continue
        for disposition, n in counts.outcomes.items():
            total.outcomes[disposition] = total.outcomes.get(disposition, 0) + n
        total.buckets = [a + b for a, b in zip(total.buckets, counts.buckets, strict=True)]
        total.seconds_sum += counts.seconds_sum
    return total


class CountsRecorder:
    """In the worker process: counts each outcome (the ``Worker`` observer) and publishes the
    counts file after each batch."""

    def __init__(self, data_dir: Path, serve_pid: int) -> None:
        self.path = counts_path(data_dir, os.getpid())
        # A restarted worker writes a file of its own; its predecessor's stays and is added up.
        self.counts = WorkerCounts(serve_pid=serve_pid)
        for stale in data_dir.glob(FILE_GLOB):
            counts = _load(stale)
            if counts is not None and counts.serve_pid != serve_pid:
                stale.unlink(missing_ok=True)

    def count(self, disposition: str, seconds: float) -> None:
        """Count one outcome and its processing time, in memory only (see :meth:`publish`)."""
        counts = self.counts
        counts.outcomes[disposition] = counts.outcomes.get(disposition, 0) + 1
        counts.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        counts.seconds_sum += seconds

    def publish(self) -> None:
        """Rewrite the counts file with what was counted so far.

        The worker calls this once per batch: a file rewrite (create, write, rename over the
        old one) cost about 0.7 ms per message when done after each one.
        """
        path = self.path
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            temporary.write_text(json.dumps(asdict(self.counts)))
            os.replace(temporary, path)
        except OSError as error:  # statistics must never stop the worker
            log.warning("cannot write %s: %s", path, error)
