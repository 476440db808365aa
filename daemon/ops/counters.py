"""What the worker process has done, shared with ``serve`` through one small JSON file.

The worker runs in its own process, so its counts cannot live in serve's memory. After each
message it rewrites ``<data_dir>/worker-counts.json`` (write to a temporary name, then rename:
a reader sees the old or the new file, never half of one). No fsync: these are statistics, and
a restart of serve starts them afresh (the file carries serve's pid; a file from an earlier
serve is ignored), which Prometheus handles as a counter reset.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("postdesk.ops")

FILE_NAME = "worker-counts.json"
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


def counts_path(data_dir: Path) -> Path:
    """Where the worker keeps its counts."""
    return data_dir / FILE_NAME


def read_counts(data_dir: Path, serve_pid: int | None = None) -> WorkerCounts:
    """The counts in the file, or zeros when it is absent, unreadable, or (given ``serve_pid``)
    written under another serve."""
    try:
        data = json.loads(counts_path(data_dir).read_text())
        counts = WorkerCounts(**data)
    except (OSError, ValueError, TypeError):
        return WorkerCounts(serve_pid=serve_pid or 0)
    if serve_pid is not None and counts.serve_pid != serve_pid:
        return WorkerCounts(serve_pid=serve_pid)
    return counts


class CountsRecorder:
    """In the worker process: the ``Worker`` observer that keeps the counts file current."""

    def __init__(self, data_dir: Path, serve_pid: int) -> None:
        self.data_dir = data_dir
        # A restarted worker continues its predecessor's counts under the same serve.
        self.counts = read_counts(data_dir, serve_pid)

    def observe(self, disposition: str, seconds: float) -> None:
        """Count one outcome and its processing time, then publish the counts."""
        counts = self.counts
        counts.outcomes[disposition] = counts.outcomes.get(disposition, 0) + 1
        counts.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        counts.seconds_sum += seconds
        path = counts_path(self.data_dir)
        temporary = path.with_name(f".{FILE_NAME}.{os.getpid()}")
        try:
            temporary.write_text(json.dumps(asdict(counts)))
            os.replace(temporary, path)
        except OSError as error:  # statistics must never stop the worker
            log.warning("cannot write %s: %s", path, error)
