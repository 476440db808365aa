"""Held mail completions are written in groups: one transaction for all that are ready."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    Table,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.orm import Session

from postdesk.daemon.outbound.releases import Releases

ROWS = Table("rows", MetaData(), Column("n", Integer, primary_key=True))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ROWS.metadata.create_all(engine)
    return engine


def _commits(engine: Engine) -> list[int]:
    """A list that grows by one at every commit on ``engine``."""
    seen: list[int] = []
    event.listen(engine, "commit", lambda _connection: seen.append(1))
    return seen


def _row(n: int, after: list[int]) -> Callable[[Session], Callable[[], None]]:
    """A completion that inserts row ``n`` and, after the commit, notes ``n`` in ``after``."""

    def write(session: Session) -> Callable[[], None]:
        session.execute(insert(ROWS).values(n=n))
        return lambda: after.append(n)

    return write


class Leader:
    """A thread writing row 0 through ``releases`` that holds its group open until
    :meth:`finish`, so that other completions arrive while it writes."""

    def __init__(self, releases: Releases, engine: Engine, after: list[int]) -> None:
        self.entered, self.go_on = threading.Event(), threading.Event()

        def slow_first(session: Session) -> Callable[[], None]:
            self.entered.set()
            self.go_on.wait(10)
            return _row(0, after)(session)

        self.thread = threading.Thread(target=releases.write, args=(engine, slow_first))
        self.thread.start()
        assert self.entered.wait(10)

    def finish(self) -> None:
        """Let the leader's group commit and wait until it has written what arrived since."""
        self.go_on.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def _stored(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return sorted(connection.scalars(select(ROWS.c.n)))


def test_completions_ready_while_a_group_is_written_share_the_next_transaction(
    engine: Engine,
) -> None:
    releases, after = Releases(), []
    leader = Leader(releases, engine, after)
    commits = _commits(engine)
    for n in (1, 2, 3):  # each returns at once: the leader writes them
        follower = threading.Thread(target=releases.write, args=(engine, _row(n, after)))
        follower.start()
        follower.join(10)
        assert not follower.is_alive()
    assert _stored(engine) == []
    leader.finish()
    assert _stored(engine) == [0, 1, 2, 3]
    assert len(commits) == 2  # the leader's own group, then the three together
    assert sorted(after) == [0, 1, 2, 3]


def test_a_failing_completion_is_left_out_and_the_others_are_written(engine: Engine) -> None:
    releases, after = Releases(), []

    def failing(session: Session) -> Callable[[], None]:
        session.execute(insert(ROWS).values(n=9))
        raise RuntimeError("a template that cannot render")

    leader = Leader(releases, engine, after)
    for completion in (_row(1, after), failing, _row(2, after)):
        releases.write(engine, completion)
    leader.finish()
    assert _stored(engine) == [0, 1, 2]  # the failing one's row rolled back with its savepoint
    assert sorted(after) == [0, 1, 2]


def test_a_group_that_cannot_be_written_is_logged_and_the_next_is_written(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    releases, after = Releases(), []
    unreachable = create_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite'}")
    releases.write(unreachable, _row(1, after))  # returns: the mail goes out when due
    assert "goes out when due" in caplog.text
    releases.write(engine, _row(2, after))
    assert _stored(engine) == [2]
    assert after == [2]


def test_each_group_committed_is_told_and_a_group_not_written_is_not(
    engine: Engine, tmp_path: Path
) -> None:
    """Under serve ``committed`` wakes the outbox sender, which sends the released mail at once
    instead of at its next poll; after the commit, so that the sender finds the rows due."""
    told: list[list[int]] = []
    releases = Releases(committed=lambda: told.append(_stored(engine)))
    after: list[int] = []
    leader = Leader(releases, engine, after)
    releases.write(engine, _row(1, after))
    leader.finish()
    assert told == [[0], [0, 1]], "once per group, each time with its rows committed"
    unreachable = create_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite'}")
    releases.write(unreachable, _row(2, after))
    assert len(told) == 2, "nothing released: the sender is not woken"
