"""Fault injection for the reliability suite, loaded only by daemons started with this folder
on PYTHONPATH. A message carrying ``X-Test-Fault: kill-worker`` kills the process running the
pipeline (``os._exit(137)``, as the kernel's OOM killer or a segfault in a C parser would);
one carrying ``X-Test-Fault: raise-in-data`` makes writing it to the spool raise a plain
``RuntimeError`` inside ``handle_DATA`` (R-02: a bug, not an ``OSError``)."""

from __future__ import annotations

import os

if os.environ.get("POSTDESK_TEST_FAULTS"):
    from postdesk.daemon import steps
    from postdesk.daemon.intake import spool

    def _kill_worker(ctx: object) -> None:
        if b"\nX-Test-Fault: kill-worker" in getattr(ctx, "raw", b""):
            os._exit(137)

    steps.PIPELINE = (_kill_worker, *steps.PIPELINE)

    _write = spool.Spool.write

    def _write_or_raise(self: spool.Spool, raw: bytes, envelope: spool.Envelope) -> str:
        if b"\nX-Test-Fault: raise-in-data" in raw:
            raise RuntimeError("injected bug: SECRET-INTERNAL-DETAIL at /srv/postdesk")
        return _write(self, raw, envelope)

    spool.Spool.write = _write_or_raise  # type: ignore[method-assign]
