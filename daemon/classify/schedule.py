"""Scheduled retraining: the models learn what agents taught without anyone running a command.

Every ``[classifier] retrain_every`` (off by default), a model that agents labelled messages
for since it was trained is trained again, exactly as ``postdesk train spam --with-feedback``
(its base data plus the labels) or, for a category model trained from tickets, ``postdesk
train category --from-tickets`` would. Training runs in its own low-priority process, so
intake and the workers carry on; the new model file is renamed into place atomically and the
workers' live reload (``loader``) picks it up with their next message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import multiprocessing
import os
import signal
import sys

from postdesk.daemon.classify.commands import CommandError, train, train_arguments
from postdesk.daemon.classify.labels import CATEGORY_KIND, SPAM_KIND, latest_id
from postdesk.daemon.classify.loader import model_path
from postdesk.daemon.config import Settings
from postdesk.daemon.ops.logs import use_log_format
from postdesk.daemon.store.db import make_engine, session_factory, upgrade_schema

log = logging.getLogger("postdesk.classify")

RETRAIN_NICENESS = 15  # below the worker's 10: answering and processing mail come first
POLL_SECONDS = 0.5  # how often a running retraining is checked (and stopped when serve stops)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


async def run(stop: asyncio.Event, settings: Settings) -> None:
    """Retrain in a separate process every ``retrain_every`` until ``stop`` is set."""
    every = settings.classifier.retrain_seconds
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().level
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return
        process = context.Process(
            target=retrain, args=(settings, level), name="postdesk-retrain", daemon=True
        )
        process.start()
        while process.is_alive():
            if stop.is_set():
                process.terminate()  # the half-written model file is removed (persist.save)
            await asyncio.sleep(POLL_SECONDS)
        process.join()
        if process.exitcode and not stop.is_set():
            log.error("scheduled retraining ended with exit status %s", process.exitcode)


def retrain(settings: Settings, level: int = logging.INFO) -> None:
    """In the retraining process: train again every model that agents taught since."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # unwind: temporary files go
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # serve decides when to stop
    os.nice(RETRAIN_NICENESS)
    logging.basicConfig(level=level, format=LOG_FORMAT)
    use_log_format(settings.log.format)
    parser = argparse.ArgumentParser(prog="postdesk train")
    train_arguments(parser)
    for arguments in due(settings):
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                train(settings, parser.parse_args(arguments))
        except CommandError as error:
            log.error("scheduled retraining of the %s model failed: %s", arguments[0], error)
            continue
        log.info("scheduled retraining: %s", " ".join(printed.getvalue().split()))


def due(settings: Settings) -> list[list[str]]:
    """The ``postdesk train`` arguments of each model agents labelled messages for since it
    was trained (a model that does not exist, or was trained from a table, has none)."""
    from postdesk.daemon.classify.persist import ModelFileError, load

    found: list[list[str]] = []
    engine = make_engine(settings.database_url)
    try:
        upgrade_schema(engine)
        with session_factory(engine)() as session:
            for kind, label_kind in (("spam", SPAM_KIND), ("category", CATEGORY_KIND)):
                path = model_path(settings.data_dir, kind)
                if not path.exists():
                    continue
                try:
                    model = load(path)
                except ModelFileError as error:
                    log.warning("%s model not retrained: %s", kind, error)
                    continue
                sources = model.meta.get("sources", {})
                if kind == "category" and "tickets" not in sources:
                    continue
                if latest_id(session, label_kind) <= int(sources.get("labels_upto", 0)):
                    continue
                if kind == "category":
                    found.append(["category", "--from-tickets", "--floor", str(model.threshold)])
                    continue
                arguments = ["spam", "--with-feedback"]
                if "target_fpr" in model.meta:
                    arguments += ["--target-fpr", str(model.meta["target_fpr"])]
                found.append(arguments)
    finally:
        engine.dispose()
    return found
