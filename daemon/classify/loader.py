"""The models a running daemon uses, reloaded when a new one is swapped in (no restart).

Each worker process keeps the models it loaded with the file's (mtime, size, inode); a cheap
``stat`` at most once a second tells it when ``postdesk train`` has renamed a new file into
place. A missing model is said once in the log; a broken one is logged and the previous
model, if any, stays in use.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from postdesk.daemon.classify.names import KINDS

if TYPE_CHECKING:  # scikit-learn is imported only once a model exists
    from postdesk.daemon.classify.model import Model

MODELS_FOLDER = "models"

log = logging.getLogger("postdesk.classify")

CHECK_EVERY_SECONDS = 1.0


@dataclass
class _Slot:
    model: Model | None = None
    stamp: tuple[int, int, int] | None = None
    checked_at: float = -CHECK_EVERY_SECONDS
    said_missing: bool = False


class ModelCache:
    """The current spam and category models of one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._slots: dict[str, _Slot] = {}

    def get(self, kind: str) -> Model | None:
        """The current ``kind`` model, or None when none is trained."""
        slot = self._slots.setdefault(kind, _Slot())
        now = time.monotonic()
        if now - slot.checked_at < CHECK_EVERY_SECONDS:
            return slot.model
        slot.checked_at = now
        path = model_path(self.data_dir, kind)
        try:
            status = path.stat()
        except FileNotFoundError:
            if not slot.said_missing:
                log.warning("no %s model at %s: run 'postdesk train %s'", kind, path, kind)
                slot.said_missing = True
            slot.model, slot.stamp = None, None
            return None
        stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
        if stamp != slot.stamp:
            slot.stamp = stamp
            from postdesk.daemon.classify.persist import ModelFileError, load

            try:
                slot.model = load(path)
                slot.model.prepare()
            except ModelFileError as error:
                log.error("%s model not loaded, keeping the previous one: %s", kind, error)
            else:
                slot.said_missing = False
                log.info("%s model loaded from %s", kind, path)
        return slot.model


def model_path(data_dir: Path, kind: str) -> Path:
    """Where the ``kind`` model ("spam" or "category") lives under the data dir."""
    return data_dir / MODELS_FOLDER / f"{kind}.skops"


_CACHES: dict[Path, ModelCache] = {}  # by the data dir resolved
_AS_GIVEN: dict[Path, ModelCache] = {}  # by the path as given: resolving costs a system call
# per path component, and the worker asks for every message


def cache_for(data_dir: Path) -> ModelCache:
    """The process-wide model cache of ``data_dir``."""
    cache = _AS_GIVEN.get(data_dir)
    if cache is None:
        cache = _CACHES.setdefault(data_dir.resolve(), ModelCache(data_dir))
        _AS_GIVEN[data_dir] = cache
    return cache


def preload(data_dir: Path) -> None:
    """Load the current models (and with them scikit-learn) now, at worker start, so that the
    first message does not wait for them. Without a model nothing is imported."""
    cache = cache_for(data_dir)
    for kind in KINDS:
        cache.get(kind)
