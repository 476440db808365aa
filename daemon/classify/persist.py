"""Models on disk: skops files (no code runs when one is loaded), swapped atomically.

A model file holds the vectorisers, the classifier, the decision threshold and the training
metadata (counts, metrics, library versions, the data it was trained on). It is written to a
temporary file in the same folder, fsynced, then renamed over the old one, so a reader sees the
old model or the new one, never half of one. Loading refuses any type outside scikit-learn,
NumPy, SciPy and the Python builtins.
"""

from __future__ import annotations

import os
import platform
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy
import scipy
import sklearn
import skops
import skops.io as sio

from postdesk.daemon.classify.model import FORMAT, Model

TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


class ModelFileError(Exception):
    """A model file is missing, unreadable, of another format or holds untrusted types."""


def versions() -> dict[str, str]:
    """The library versions a model was trained with."""
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "skops": skops.__version__,
    }


def save(model: Model, path: Path) -> None:
    """Write ``model`` to ``path`` atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model.meta = {
        **model.meta,
        "format": FORMAT,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    payload: dict[str, Any] = {
        "format": FORMAT,
        "kind": model.kind,
        "hashers": model.hashers,
        "weights": model.weights,
        "classifier": model.classifier,
        "threshold": model.threshold,
        "meta": model.meta,
    }
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(sio.dumps(payload, compression=zipfile.ZIP_DEFLATED))  # mostly zeros
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load(path: Path) -> Model:
    """Read a model file written by :func:`save`; raises ModelFileError when it cannot."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"no model at {path}") from None
    try:
        untrusted = sio.get_untrusted_types(data=data)
        refused = [name for name in untrusted if not name.startswith(TRUSTED_PREFIXES)]
        if refused:
            raise ModelFileError(f"{path} holds types that are not trusted: {', '.join(refused)}")
        payload = sio.loads(data, trusted=untrusted)
    except ModelFileError:
        raise
    except Exception as error:
        raise ModelFileError(f"{path} is not a readable model ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a postdesk model of format {FORMAT}")
    return Model(
        kind=str(payload["kind"]),
        hashers=payload["hashers"],
        weights=payload["weights"],
        classifier=payload["classifier"],
        threshold=float(payload["threshold"]),
        meta=dict(payload["meta"]),
    )
