"""Reply extraction benchmark: how often ``extract_new_text`` finds exactly the new text.

Run from the repository root: ``python bench/bench_replies.py [--dump]``. Cases are the reply
fixtures of the shared corpus (``$POSTDESK_CORPUS/replies``, duplicates by content removed):
the talon standard replies with their own ``*_reply_text`` answers (without the signatures and
device footers talon keeps and we drop), and every ``*.txt`` sample
with an answer in ``bench/reply_labels.tsv``: the 1-based numbers of the sample's lines that a
person reading the mail judged to be the new text (signature and client footers excluded).
The labels hold line numbers only, no corpus text. Comparison ignores trailing whitespace and
blank lines. The baseline, measured in the same run, keeps every line above the first ``>``.
``--dump`` prints each unlabelled sample with line numbers and the lines we keep, for labelling.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from postdesk.daemon.mail.parse import parse_message
from postdesk.daemon.mail.reply import extract_new_text

CORPUS = Path(
    os.environ.get("POSTDESK_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)
REPLIES = CORPUS / "replies"
LABELS = Path(__file__).resolve().parent / "reply_labels.tsv"
SAMPLE_DIRS = (
    "github-email_reply_parser",
    "zapier-email-reply-parser",
    "crisp-oss-email-reply-parser",
)


def normalise(text: str) -> list[str]:
    """Non-blank lines without trailing whitespace."""
    return [line.rstrip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def samples() -> dict[str, str]:
    """Text samples by "dir/name", each distinct content once."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    for folder in SAMPLE_DIRS:
        for path in sorted((REPLIES / folder).glob("*.txt")):
            text = path.read_text(encoding="utf-8", errors="replace")
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                found[f"{folder}/{path.name}"] = text
    return found


def read_labels() -> dict[str, set[int]]:
    """ "dir/name" -> the line numbers of the new text."""
    labels: dict[str, set[int]] = {}
    if not LABELS.exists():
        return labels
    for row in LABELS.read_text().splitlines():
        if not row.strip() or row.startswith("#"):
            continue
        name, _, ranges = row.partition("\t")
        numbers: set[int] = set()
        for part in filter(None, ranges.split(",")):
            start, _, end = part.partition("-")
            numbers.update(range(int(start), int(end or start) + 1))
        labels[name] = numbers
    return labels


def expected_text(text: str, numbers: set[int]) -> list[str]:
    """The labelled lines of ``text``, normalised."""
    lines = text.replace("\r\n", "\n").split("\n")
    return normalise("\n".join(lines[n - 1] for n in sorted(numbers) if n <= len(lines)))


def baseline(text: str) -> str:
    """Every line above the first quoted one."""
    kept = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.lstrip().startswith(">"):
            break
        kept.append(line)
    return "\n".join(kept)


def talon_cases() -> list[tuple[str, str, list[str]]]:
    """(name, body text, expected) for the talon standard replies."""
    cases = []
    for eml in sorted((REPLIES / "mailgun-talon" / "standard_replies").glob("*.eml")):
        answer = eml.with_name(eml.stem + "_reply_text")
        expected = answer.read_text(encoding="utf-8") if answer.exists() else "Hello"
        expected = re.split(r"(?m)^-- ?$", expected)[0]  # we drop "-- " signatures; talon keeps
        expected = re.sub(r"(?mi)^sent from my .*$", "", expected)  # and device footers
        cases.append(
            (f"talon/{eml.name}", parse_message(eml.read_bytes()).text, normalise(expected))
        )
    return cases


def score(
    cases: list[tuple[str, str, list[str]]], extract: Callable[[str], str]
) -> tuple[int, list[str]]:
    """How many cases ``extract`` gets exactly right, and the names of the misses."""
    misses = [name for name, text, want in cases if normalise(extract(text)) != want]
    return len(cases) - len(misses), misses


def dump(name: str, text: str) -> None:
    """Print a sample with line numbers, marking the lines ``extract_new_text`` keeps."""
    kept = normalise(extract_new_text(text))
    lines = text.replace("\r\n", "\n").split("\n")
    marks, position = [], 0
    for number, line in enumerate(lines, 1):
        if position < len(kept) and line.strip() and line.rstrip() == kept[position]:
            marks.append(number)
            position += 1
    print(f"===== {name}   proposed: {','.join(map(str, marks))}")
    for number, line in enumerate(lines, 1):
        print(f"{'*' if number in marks else ' '}{number:3} {line[:110]}")


def main() -> None:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", action="store_true", help="print unlabelled samples")
    args = parser.parse_args()
    if not REPLIES.is_dir():
        sys.exit(f"no reply corpus at {REPLIES} (set POSTDESK_CORPUS)")
    texts, labels = samples(), read_labels()
    if args.dump:
        for name, text in texts.items():
            if name not in labels:
                dump(name, text)
        return
    labelled = [(n, t, expected_text(t, labels[n])) for n, t in texts.items() if n in labels]
    cases = talon_cases() + labelled
    started = time.perf_counter()
    ours, misses = score(cases, extract_new_text)
    elapsed = time.perf_counter() - started
    base, _ = score(cases, baseline)
    print(f"{len(cases)} cases ({len(texts) - len(labelled)} samples unlabelled)")
    print(f"postdesk extract_new_text: {ours}/{len(cases)} exactly right ({ours / len(cases):.1%})")
    print(f"baseline (text above the first '>'): {base}/{len(cases)} ({base / len(cases):.1%})")
    print(f"ratio postdesk / baseline: {ours / max(base, 1):.2f}")
    print(f"time: {elapsed * 1e3 / len(cases):.2f} ms per case")
    if misses:
        print("misses: " + " ".join(misses))


if __name__ == "__main__":
    main()
