"""Claims left behind by a dead process: requeue them, counting the attempt, or quarantine.

A worker killed while it held a message leaves the file in ``spool/work``. The supervisor calls
:func:`requeue_claims` with the dead worker's pid as soon as it notices the death (and ``serve``
at start-up for every claim), so the message is processed again without waiting for a restart
of ``serve``. The interrupted attempt counts: a message that has killed the worker
``processing.max_attempts`` times goes to quarantine instead of killing it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.intake.spool import Spool
from postdesk.daemon.store import quarantine
from postdesk.daemon.store.db import transaction

log = logging.getLogger("postdesk.reclaim")


@dataclass(frozen=True)
class Reclaimed:
    """How many claims went back to the queue and how many to quarantine."""

    requeued: int = 0
    held: int = 0


def requeue_claims(
    spool: Spool, factory: sessionmaker[Session], owner: int | None, max_attempts: int
) -> Reclaimed:
    """Settle the claims of process ``owner`` (all claims when None); see the module doc."""
    requeued = held = 0
    for entry in spool.claims(owner):
        attempts = entry.attempts + 1
        if attempts >= max_attempts:
            reason = f"interrupted {attempts} times (the process handling it died each time)"
            try:
                with transaction(factory) as session:
                    quarantine.hold(session, entry, reason)
            except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as error:
                log.warning("cannot quarantine %s now (%s); requeued", entry.spool_id, error)
            else:
                spool.done(entry)
                held += 1
                log.warning("%s held: %s", entry.spool_id, reason)
                continue
        spool.retry(entry, count_attempt=True)
        requeued += 1
    if requeued or held:
        whose = "the last shutdown" if owner is None else f"worker {owner}"
        log.warning(
            "requeued %d message(s) interrupted by %s, quarantined %d", requeued, whose, held
        )
    return Reclaimed(requeued, held)
