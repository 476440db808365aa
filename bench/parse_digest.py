"""Check that a change to the mail parser leaves every parsed message identical.

Run from the repository root: ``python bench/parse_digest.py OUT.json [--against OLD.json]
[--corpus DIR]``. Every mail file of the shared corpus (CSV, YAML, Markdown and gzip files
aside) is parsed; the digest of each result is the SHA-256 of its ``repr`` (every field of
``ParsedMessage``, attachments' bytes included) plus the text of its HTML body, or of the
rejection reason. Written to OUT.json; with ``--against``, the files whose digest differs from
OLD.json (made the same way with the code before the change) are listed and the exit status
is 1 when there are any.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from postdesk.daemon.mail.htmltext import html_to_text
from postdesk.daemon.mail.parse import MessageRejected, parse_message

SKIPPED_SUFFIXES = (".csv", ".md", ".yml", ".gz", ".json")


def digest(raw: bytes) -> str:
    """The SHA-256 of everything the parser makes of ``raw``."""
    try:
        parsed = parse_message(raw)
        text = repr(parsed)
        if parsed.html is not None:
            text += html_to_text(parsed.html)
    except MessageRejected as rejected:
        text = f"REJECTED {rejected.reason}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def main() -> None:
    """Write the digests; compare them with an earlier run when asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--against", type=Path, help="digests made before the change")
    parser.add_argument("--corpus", type=Path, help="the shared corpus folder")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[2] / "shared" / "corpus"
    base = args.corpus or Path(os.environ.get("POSTDESK_CORPUS") or root)
    files = sorted(
        path
        for path in base.rglob("*")
        if path.is_file() and path.suffix not in SKIPPED_SUFFIXES and "LICENSE" not in path.name
    )
    digests = {str(path.relative_to(base)): digest(path.read_bytes()) for path in files}
    args.out.write_text(json.dumps(digests, indent=0))
    print(f"{len(digests)} files parsed")
    if args.against:
        before = json.loads(args.against.read_text())
        names = sorted(before.keys() | digests.keys())
        changed = [name for name in names if before.get(name) != digests.get(name)]
        for name in changed:
            print(f"differs: {name}")
        print(f"{len(changed)} of {len(digests)} differ")
        sys.exit(1 if changed else 0)


if __name__ == "__main__":
    main()
