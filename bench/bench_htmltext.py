"""HTML-to-text benchmark: every text/html part of the SpamAssassin corpus.

Run from the repository root: ``python bench/bench_htmltext.py [--repeat 3]``. Prints, for our
``html_to_text`` (Lexbor via selectolax) and for two baselines measured in the same run (a bare
stdlib ``html.parser`` pass that produces nothing, and inscriptis when it is installed): the
time per document, the ratio against the stdlib pass, and how many documents came out empty.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import sys
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from postdesk.daemon.mail.htmltext import html_to_text

CORPUS = Path(
    os.environ.get("POSTDESK_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)


def html_documents() -> list[str]:
    """The decoded text/html parts of every SpamAssassin message."""
    documents: list[str] = []
    for path in sorted((CORPUS / "spamassassin").rglob("*")):
        if not path.is_file() or path.name.startswith("LICENSE"):
            continue
        raw = path.read_bytes().split(b"\n", 1)[-1]
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        for part in message.walk():
            if part.get_content_type() != "text/html":
                continue
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                documents.append(payload.decode("cp1252", "replace"))  # charsets do not matter here
    return documents


def stdlib_pass(html: str) -> str:
    """Baseline: tokenize with the stdlib parser, keep nothing."""
    parser = HTMLParser()
    parser.feed(html)
    parser.close()
    return ""


def measure(name: str, convert: Callable[[str], str], docs: list[str], repeat: int) -> float:
    """Best-of-``repeat`` seconds for converting every document; prints one line."""
    best = float("inf")
    empty = 0
    for _ in range(repeat):
        started = time.perf_counter()
        outputs = [convert(doc) for doc in docs]
        best = min(best, time.perf_counter() - started)
        empty = sum(1 for out in outputs if not out.strip())
    print(f"{name:<28} {best * 1e6 / len(docs):9.1f} us/doc   empty: {empty}")
    return best


def main() -> None:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    docs = html_documents()
    if not docs:
        sys.exit(f"no HTML documents found under {CORPUS / 'spamassassin'}")
    print(f"{len(docs)} HTML documents, {sum(map(len, docs)) / 1e6:.1f} M characters")
    baseline = measure("stdlib html.parser (no output)", stdlib_pass, docs, args.repeat)
    ours = measure("postdesk html_to_text", html_to_text, docs, args.repeat)
    print(f"ratio postdesk / stdlib pass: {ours / baseline:.2f}")
    try:
        from inscriptis import get_text
    except ImportError:
        print("inscriptis not installed: no comparison")
        return
    theirs = measure("inscriptis get_text", get_text, docs, args.repeat)
    print(f"ratio postdesk / inscriptis: {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
