"""The worker's commit nudges reach serve through WorkerChannel, and never block either side."""

from __future__ import annotations

import multiprocessing
import select

from postdesk.daemon.workerproc import WorkerChannel


def _commit_twice(channel: WorkerChannel) -> None:
    """In a child process: what the worker does after two committed batches."""
    channel.committed()
    channel.committed()


def _readable(channel: WorkerChannel, timeout: float) -> bool:
    ready, _, _ = select.select([channel.committed_reader.fileno()], [], [], timeout)
    return bool(ready)


def test_a_child_process_commit_nudge_wakes_the_parent_once_taken() -> None:
    context = multiprocessing.get_context("spawn")
    channel = WorkerChannel.create(context)
    assert not _readable(channel, 0)
    child = context.Process(target=_commit_twice, args=(channel,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert _readable(channel, 10)
    channel.take_committed()  # both nudges at once
    assert not _readable(channel, 0)
    channel.take_committed()  # nothing waiting: returns at once
    assert not _readable(channel, 0)


def test_commit_nudges_never_block_when_nobody_takes_them() -> None:
    """serve may be busy for a long time: a full pipe already holds a nudge."""
    channel = WorkerChannel.create(multiprocessing.get_context("spawn"))
    for _ in range(200_000):  # more bytes than a pipe holds
        channel.committed()
    assert _readable(channel, 0)
    channel.take_committed()
    channel.committed()
    assert _readable(channel, 0)
