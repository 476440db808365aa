"""Composer cost: the product composer against the stdlib one it replaced, in one run.

Composes the same acknowledgement and agent notification (text + HTML, rendered from the real
templates) with ``postdesk.daemon.outbound.compose`` and with the reference
``tests/compose_reference.py`` and prints the time per mail of each and their ratio.

    python bench/bench_compose.py --mails 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from postdesk.daemon.outbound.compose import compose
from postdesk.daemon.outbound.templating import AGENT_NOTIFICATION, CUSTOMER_ACKNOWLEDGEMENT
from tests.compose_reference import compose as reference_compose
from tests.test_agents_templates import CONTEXT
from tests.test_compose import make_services


def per_mail_ms(composer: Callable[..., bytes], cases: list[dict[str, Any]], mails: int) -> float:
    """Milliseconds per mail to compose ``mails`` mails cycling through ``cases``."""
    services = make_services()
    started = time.perf_counter()
    for number in range(mails):
        composer(services, **cases[number % len(cases)])
    return (time.perf_counter() - started) * 1000 / mails


def main() -> None:
    """Print both composers' cost per mail and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=2000)
    args = parser.parse_args()
    services = make_services()
    cases = []
    for template, name in (
        (CUSTOMER_ACKNOWLEDGEMENT, "Jürgen Müller"),
        (AGENT_NOTIFICATION, "Carol"),
    ):
        rendered = services.templates.render(template, {**CONTEXT, "customer_name": name})
        cases.append(
            {
                "to": [f"{name} <carol@example.org>"],
                "subject": rendered.subject,
                "rendered": rendered,
                "message_id": services.tokens.mint(7),
                "in_reply_to": "<orig@example.org>",
                "references": ["<orig@example.org>"],
                "auto": True,
            }
        )
    ours = per_mail_ms(compose, cases, args.mails)
    theirs = per_mail_ms(reference_compose, cases, args.mails)
    print(f"{args.mails} mails (acknowledgement and notification, text + HTML)")
    print(f"  stdlib EmailMessage composer (reference): {theirs:.3f} ms/mail")
    print(f"  postdesk composer                       : {ours:.3f} ms/mail")
    print(f"  ratio reference / postdesk              : {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
