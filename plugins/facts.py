"""The facts looked up ahead of the worker, left in files for it (see
``PluginRunner.start_looking_ahead``)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

from postdesk.plugins.snapshots import json_default

Facts = dict[str, Any]
LookupKey = tuple[str, str]  # (sender address, subject and new text)
Waiting = tuple[str, str, LookupKey]  # (spool file name, spool id, lookup key)
Upcoming = Callable[[Container[str]], list[Waiting]]  # seen file names -> the others waiting

EXPECTED, READY, PARTIAL = ".wait", ".json", ".part"  # file name endings


class FactsFolder:
    """The facts looked up ahead of the worker: a small JSON file per spooled message.

    The look-ahead marks a message as expected (``<spool id>.wait``) before its lookups
    start, writes its facts (``<spool id>.json``, whole or not at all) once they answer, and
    only then removes the mark; the worker takes the facts, or waits for them while the mark
    is there. The files are a cache, never the only copy of anything: a missing one only
    means that the worker looks up itself.
    """

    def __init__(self, folder: Path) -> None:
        """Keep the files in ``folder`` (made by :meth:`clear`)."""
        self.folder = folder

    def _path(self, spool_id: str, ending: str) -> str:
        return os.path.join(self.folder, spool_id + ending)

    def expect(self, spool_id: str) -> None:
        """Mark the facts of ``spool_id`` as on their way."""
        with open(self._path(spool_id, EXPECTED), "wb"):
            pass

    def expected(self, spool_id: str) -> bool:
        """True while the facts of ``spool_id`` are on their way."""
        return os.path.exists(self._path(spool_id, EXPECTED))

    def put(self, spool_id: str, facts: Facts) -> None:
        """Leave the facts of ``spool_id`` for the worker, then drop the mark."""
        partial = self._path(spool_id, PARTIAL)
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(facts, handle, default=json_default)
        os.replace(partial, self._path(spool_id, READY))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(spool_id, EXPECTED))

    def take(self, spool_id: str) -> Facts | None:
        """The facts left for ``spool_id`` (removed from the folder), or None if there are none."""
        path = self._path(spool_id, READY)
        try:
            with open(path, encoding="utf-8") as handle:
                facts: Facts = json.load(handle)
        except FileNotFoundError:
            return None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return facts

    def prune(self, older_than: float) -> int:
        """Remove the files not touched for ``older_than`` seconds (their message was done
        without them, or their look-ahead died); how many were removed."""
        cutoff, removed = time.time() - older_than, 0
        for entry in os.scandir(self.folder):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    def clear(self) -> None:
        """Make the folder, or remove every file in it: when a look-ahead starts, before any
        worker looks (the marks of one that stopped would make the worker wait in vain)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.prune(-1.0)
