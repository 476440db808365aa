"""Completions of held mail written in groups, one transaction each.

When the plugins' lookups answer, the held notifications of that message are completed
(``daemon/outbound/held.py``). Whatever completions become ready while one group is being
written go together into the next transaction, so that a burst of answered lookups costs a few
commits, not one each, and the worker's own transactions seldom wait for the database's write
lock (SQLite has one writer at a time).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

log = logging.getLogger("postdesk.outbound")


# A completion: writes in the session it is given; returns what is to run after the commit.
Write = Callable[[Session], Callable[[], None]]


@dataclass
class Releases:
    """Writes completions of held mail in groups, one transaction each (a leader writes while
    the others only leave their completion; see the module's docstring)."""

    # Called after each group commits, from the writing thread: under serve it wakes the
    # outbox sender (daemon/workerproc.py), else the released mail waits for its next poll.
    committed: Callable[[], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ready: list[Write] = field(default_factory=list)
    _writing: bool = False

    def write(self, engine: Engine | Connection, completion: Write) -> None:
        """Write ``completion`` in a transaction shared with the completions ready meanwhile,
        each in its own savepoint (one that fails is logged and left out); then run what each
        returned. Returns at once when another thread is writing: that thread writes it."""
        with self._lock:
            self._ready.append(completion)
            if self._writing:
                return
            self._writing = True
        while True:
            with self._lock:
                group, self._ready = self._ready, []
                if not group:
                    self._writing = False
                    return
            try:
                written = _write_group(engine, group)
            except Exception:
                log.exception("releasing %d held mails failed; they go out when due", len(group))
                continue
            if written and self.committed is not None:
                self.committed()


def _write_group(engine: Engine | Connection, group: Sequence[Write]) -> int:
    """Run the completions of ``group`` in one transaction, then what follows each commit;
    returns how many were written."""
    follows: list[Callable[[], None]] = []
    with Session(engine) as session, session.begin():
        for completion in group:
            try:
                with session.begin_nested():
                    follows.append(completion(session))
            except Exception:
                log.exception("releasing a held mail failed; it goes out when due")
    for follow in follows:
        follow()
    return len(follows)
