"""Lookups asked by the worker and answered by the plugins process, through small files.

The worker asks for the facts of a message (``asked/<spool id>.ask``, holding the lookup key)
and goes on with the next message; the plugins process takes the question (renamed to
``asked/<spool id>.wait``), looks it up and leaves the answer (``answers/<spool id>.json``,
whole or not at all); questions and answers live apart, so that the worker, which looks for
answers every few milliseconds, lists only the few answers waiting, not a backlog of questions;
the worker takes it in the background and completes the held notification (see
``PluginRunner.lookup`` and ``PluginRunner.start_answering``). The files are a hand-over, never
the only copy of anything: a question left unanswered only means that the worker looks up
itself once the lookup timeout has passed.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from postdesk.plugins.snapshots import json_default

Facts = dict[str, Any]
LookupKey = tuple[str, str]  # (sender address, subject and new text)

ASKED, TAKEN, ANSWERED, PARTIAL = ".ask", ".wait", ".json", ".part"  # file name endings


def lookup_text(subject: str, new_text: str) -> str:
    """The text the lookups of a message are given: its subject and new text."""
    return f"{subject}\n{new_text}"


class FactsFolder:
    """Questions and answers about the facts of spooled messages, a small file each."""

    def __init__(self, folder: Path) -> None:
        """Keep the files in ``folder`` (made by :meth:`reopen`)."""
        self.folder = folder
        self.asked, self.answers = folder / "asked", folder / "answers"
        self._made = False  # the folders exist

    def _path(self, spool_id: str, ending: str) -> str:
        return os.path.join(self.answers if ending == ANSWERED else self.asked, spool_id + ending)

    def _write(self, spool_id: str, ending: str, data: object) -> None:
        """Write ``data`` as JSON to ``<spool id><ending>``, whole or not at all."""
        if not self._made:  # a worker may ask before the answering process has started
            self._make()
        final = self._path(spool_id, ending)
        partial = final + PARTIAL
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(data, handle, default=json_default)
        os.replace(partial, final)

    def _make(self) -> None:
        for folder in (self.asked, self.answers):
            folder.mkdir(parents=True, exist_ok=True)
        self._made = True

    def ask(self, spool_id: str, key: LookupKey) -> None:
        """Ask for the facts of ``spool_id`` (the worker)."""
        self._write(spool_id, ASKED, list(key))

    def withdraw(self, spool_id: str) -> None:
        """Take back the question about ``spool_id`` unless it is being answered already."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(spool_id, ASKED))

    def questions(self) -> list[tuple[str, LookupKey]]:
        """Take the questions asked since the last call: (spool id, lookup key) each (the
        plugins process; a question is taken once, by renaming it)."""
        taken = []
        for entry in os.scandir(self.asked):
            if not entry.name.endswith(ASKED):
                continue
            spool_id = entry.name.removesuffix(ASKED)
            waiting = self._path(spool_id, TAKEN)
            try:
                os.rename(entry.path, waiting)
                with open(waiting, encoding="utf-8") as handle:
                    email, text = json.load(handle)
            except (OSError, ValueError):
                continue  # gone (pruned), or not a question this version wrote
            taken.append((spool_id, (str(email), str(text))))
        return taken

    def answer(self, spool_id: str, facts: Facts) -> None:
        """Leave the facts of ``spool_id`` for the worker, then drop the question."""
        self._write(spool_id, ANSWERED, facts)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(spool_id, TAKEN))

    def answered(self) -> list[str]:
        """The spool ids whose answers wait to be taken (one listing of the folder)."""
        return [
            entry.name.removesuffix(ANSWERED)
            for entry in os.scandir(self.answers)
            if entry.name.endswith(ANSWERED)
        ]

    def take(self, spool_id: str) -> Facts | None:
        """The answer for ``spool_id`` (removed from the folder), or None if there is none yet."""
        path = self._path(spool_id, ANSWERED)
        try:
            with open(path, encoding="utf-8") as handle:
                facts: Facts = json.load(handle)
        except FileNotFoundError:
            return None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return facts

    def prune(self, older_than: float) -> int:
        """Remove the files not touched for ``older_than`` seconds (answers nobody took,
        questions of a stopped process); how many were removed."""
        cutoff, removed = time.time() - older_than, 0
        for folder in (self.asked, self.answers):
            for entry in os.scandir(folder):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def reopen(self) -> None:
        """When the answering (re)starts: make the folder, and ask again the questions taken
        by an answering process that stopped before it answered them."""
        self._make()
        for entry in os.scandir(self.asked):
            if entry.name.endswith(TAKEN):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(entry.path, self._path(entry.name.removesuffix(TAKEN), ASKED))
