"""Fault injection for the reliability suite, loaded only by daemons started with this folder
on PYTHONPATH. A message carrying ``X-Test-Fault: kill-worker`` kills the process running the
pipeline (``os._exit(137)``, as the kernel's OOM killer or a segfault in a C parser would);
one carrying ``X-Test-Fault: raise-in-data`` makes committing it to the spool, once its DATA
has been read, raise a plain ``RuntimeError`` (R-02: a bug, not an ``OSError``)."""

from __future__ import annotations

import os

if os.environ.get("POSTDESK_TEST_FAULTS"):
    from postdesk.daemon import steps
    from postdesk.daemon.intake import spool

    def _kill_worker(ctx: object) -> None:
        if b"\nX-Test-Fault: kill-worker" in getattr(ctx, "raw", b""):
            os._exit(137)

    steps.PIPELINE = (_kill_worker, *steps.PIPELINE)

    _write = spool.IncomingFile.write
    _commit = spool.IncomingFile.commit
    _MARKED: set[int] = set()  # ids of the incoming files that carried the fault header

    def _write_and_watch(self: spool.IncomingFile, data: bytes) -> None:
        if b"X-Test-Fault: raise-in-data" in data:
            _MARKED.add(id(self))
        _write(self, data)

    def _commit_or_raise(self: spool.IncomingFile) -> str:
        if id(self) in _MARKED:
            _MARKED.discard(id(self))
            raise RuntimeError("injected bug: SECRET-INTERNAL-DETAIL at /srv/postdesk")
        return _commit(self)

    spool.IncomingFile.write = _write_and_watch  # type: ignore[method-assign]
    spool.IncomingFile.commit = _commit_or_raise  # type: ignore[method-assign]
