"""What ``postdesk ingest`` says about the messages it spooled, and its exit status.

Every spooled message is accounted for: its final outcome when ``ingest`` processed it itself
(a retried message counts once, by its last outcome), or, while ``postdesk serve`` runs on the
same data dir and its worker takes the messages, how many the daemon has processed.
"""

from __future__ import annotations

from collections import Counter

from postdesk.daemon.intake.files import wait_until_processed, waiting
from postdesk.daemon.intake.spool import Spool
from postdesk.daemon.worker import Outcome

SERVE_PATIENCE_SECONDS = 30.0  # give up waiting for the daemon after this long without progress
EXIT_OK, EXIT_RUNTIME = 0, 1


def summary(outcomes: list[Outcome]) -> str:
    """One line: how many messages ended how (each spool id once, by its last outcome)."""
    final = list({o.spool_id: o for o in outcomes}.values())
    counts = Counter(o.disposition for o in final)
    created = sum(1 for o in final if o.created)
    parts = [f"{counts.pop('stored', 0)} stored ({created} new tickets)"]
    parts += [f"{n} {kind}" for kind, n in sorted(counts.items())]
    return f"ingested {len(final)} message(s): " + ", ".join(parts)


def report(ids: list[str], outcomes: list[Outcome], spool: Spool) -> int:
    """Print the summary of our own processing; exit 1 when any of ``ids`` is left unfinished."""
    print(summary(outcomes))
    left = waiting(spool, ids)
    if not left:
        return EXIT_OK
    reasons = {o.detail for o in outcomes if o.disposition == "deferred" and o.detail}
    why = f" ({sorted(reasons)[0]})" if reasons else ""
    print(
        f"{len(left)} message(s) not processed yet{why}; they stay in the spool: "
        "run `postdesk ingest` again or start `postdesk serve`"
    )
    return EXIT_RUNTIME


def handed_to_serve(spool: Spool, ids: list[str]) -> int:
    """Wait while the running daemon processes ``ids``, then say so plainly; exit 0."""
    left = wait_until_processed(spool, ids, SERVE_PATIENCE_SECONDS)
    done = len(ids) - len(left)
    line = f"spooled {len(ids)} message(s) for the running postdesk serve, which processed {done}"
    if left:
        line += f"; {len(left)} still wait in its spool"
    print(line + ". Their fates: its log, `postdesk tickets` and `postdesk quarantine`.")
    return EXIT_OK
