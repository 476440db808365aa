"""The sender keeps pace with a burst: mail committed while a drain runs goes out in it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from postdesk.daemon.outbound import maildir
from tests.test_outbox_sender import Env, drain, env, outbox, queue

__all__ = ["env"]  # the fixture, shared with the sender's tests

NEW = ("outbox-sent", "new")


def test_mail_committed_during_a_drain_goes_out_in_that_drain(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker commits more tickets while the sender writes a group: the same drain claims
    their mail next, instead of leaving it to a later round."""
    queue(env, number=1)
    real_deliver = maildir.deliver
    groups: list[int] = []

    def deliver(root: Path, mails: Sequence[tuple[int, bytes]]) -> dict[int, OSError | None]:
        groups.append(len(mails))
        if len(groups) == 1:
            queue(env, number=2)  # committed after this group was claimed
        return real_deliver(root, mails)

    monkeypatch.setattr(maildir, "deliver", deliver)
    assert drain(env) == 2
    assert groups == [1, 1]
    assert {row.status for row in outbox(env)} == {"sent"}
    assert len(os.listdir(env.settings.data_dir.joinpath(*NEW))) == 2


def test_a_maildir_backlog_is_written_as_one_group(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog bigger than a relay group (32 rows a connection) is claimed and written at
    once: one claim, one folder sync, one outcome transaction."""
    env = env.outbound(connections=1, auto_per_recipient_10min=1000, auto_per_recipient_day=1000)
    items = [queue(env, number=number) for number in range(1, 81)]
    assert all(item is not None for item in items)
    real_deliver = maildir.deliver
    groups: list[int] = []

    def deliver(root: Path, mails: Sequence[tuple[int, bytes]]) -> dict[int, OSError | None]:
        groups.append(len(mails))
        return real_deliver(root, mails)

    monkeypatch.setattr(maildir, "deliver", deliver)
    assert drain(env) == len(items)
    assert groups == [len(items)]
    assert {row.status for row in outbox(env)} == {"sent"}


def test_a_row_retried_during_a_drain_waits_for_the_next_one(env: Env) -> None:
    """Even with no backoff, a mail that failed is not tried again in the same drain: only mail
    never tried yet joins a drain after it started."""
    env = env.outbound(retry_base_seconds=0.0, max_attempts=5)
    item = queue(env)
    assert item is not None
    tmp = env.settings.data_dir / "outbox-sent" / "tmp"
    tmp.mkdir(parents=True)
    (tmp / f"{maildir.file_name(item.id)}.{os.getpid()}").mkdir()  # open() fails on it
    assert drain(env) == 1
    [row] = outbox(env)
    assert (row.status, row.attempts) == ("pending", 1)
    assert drain(env) == 1
    assert outbox(env)[0].attempts == 2
