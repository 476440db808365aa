"""Fault injection for the reliability suite, loaded only by daemons started with this folder
on PYTHONPATH: a message carrying ``X-Test-Fault: kill-worker`` kills the process running the
pipeline (``os._exit(137)``, as the kernel's OOM killer or a segfault in a C parser would)."""

from __future__ import annotations

import os

if os.environ.get("POSTDESK_TEST_FAULTS"):
    from postdesk.daemon import steps

    def _kill_worker(ctx: object) -> None:
        if b"\nX-Test-Fault: kill-worker" in getattr(ctx, "raw", b""):
            os._exit(137)

    steps.PIPELINE = (_kill_worker, *steps.PIPELINE)
