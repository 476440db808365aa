"""``postdesk train``, ``postdesk evaluate`` and ``postdesk classify`` (called from ``cli``).

``train spam`` reads ham and spam from mail folders, Maildirs, mbox files and archives of
them, or from a CSV table whose label column says spam or ham (and, with ``--with-feedback``,
the messages agents labelled ``#spam``/``#ham``); ``train category`` reads a CSV table or the
tickets agents categorised. Models are saved under ``data_dir/models/``, where a running
daemon picks them up without a restart.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from postdesk.daemon.classify import labels as agent_labels
from postdesk.daemon.classify.features import Sample
from postdesk.daemon.classify.judge import judge
from postdesk.daemon.classify.loader import ModelCache, model_path
from postdesk.daemon.classify.names import DEFAULT_FLOOR, DEFAULT_TARGET_FPR, HAM, KINDS, SPAM
from postdesk.daemon.classify.sources import (
    SPLITS,
    SourceError,
    featurise,
    raw_messages,
    read_csv,
    spam_labels,
)
from postdesk.daemon.config import Settings
from postdesk.daemon.mail.parse import MessageRejected, parse_message
from postdesk.daemon.store.db import make_engine, session_factory, upgrade_schema

if TYPE_CHECKING:  # scikit-learn, skops and tqdm load only when a command needs them
    from postdesk.daemon.classify.model import Model


class CommandError(Exception):
    """A classifier command cannot do what it was asked (one line: what to fix)."""


# --- argument definitions (cli.py adds the subparsers and calls these) ---


def train_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``postdesk train spam|category``."""
    parser.add_argument("what", choices=["spam", "category"])
    _spam_sources(parser)
    parser.add_argument("--with-feedback", action="store_true", help="add what agents labelled")
    parser.add_argument(
        "--target-fpr",
        type=float,
        default=DEFAULT_TARGET_FPR,
        help="spam: highest ham false-positive rate on held-back data (0.002)",
    )
    _csv_sources(parser)
    parser.add_argument(
        "--from-tickets",
        action="store_true",
        help="category: learn from the categories agents set with #category",
    )
    parser.add_argument(
        "--floor",
        type=float,
        default=DEFAULT_FLOOR,
        help="category: below this probability the category is unknown (0.5)",
    )


def evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``postdesk evaluate spam|category``."""
    parser.add_argument("what", choices=["spam", "category"])
    _spam_sources(parser)
    _csv_sources(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")


def classify_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``postdesk classify FILE``."""
    parser.add_argument("file", type=Path, metavar="FILE", help="one raw message (.eml)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--explain", action="store_true", help="list the features that weighed most"
    )


def _spam_sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ham", nargs="+", type=Path, default=[], metavar="PATH")
    parser.add_argument("--spam", nargs="+", type=Path, default=[], metavar="PATH")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="use only this part of the fixed split of the data (all)",
    )


def _csv_sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--csv",
        type=Path,
        metavar="FILE",
        help="a CSV table (spam: its label column says spam/ham, 1/0, true/false or yes/no)",
    )
    parser.add_argument("--text", default="subject,body", help="text columns (subject,body)")
    parser.add_argument("--label", default="queue", help="the label column (queue)")


# --- commands ---


def train(settings: Settings, args: argparse.Namespace) -> int:
    """``postdesk train spam|category``."""
    from postdesk.daemon.classify.model import TrainingError
    from postdesk.daemon.classify.persist import ModelFileError

    try:
        if args.what == "spam":
            return _train_spam(settings, args)
        return _train_category(settings, args)
    except (SourceError, TrainingError, ModelFileError) as error:
        raise CommandError(str(error)) from None


def _train_spam(settings: Settings, args: argparse.Namespace) -> int:
    from postdesk.daemon.classify.model import train_spam
    from postdesk.daemon.classify.persist import load, save

    if not 0 <= args.target_fpr < 1:
        raise CommandError("--target-fpr: expected a rate between 0 and 1, e.g. 0.002")
    ham, spam, split = list(args.ham), list(args.spam), args.split
    table = _table(args)
    path = model_path(settings.data_dir, "spam")
    if args.with_feedback and not (ham or spam or table) and path.exists():
        sources = load(path).meta.get("sources", {})
        ham = [Path(p) for p in sources.get(HAM, [])]
        spam = [Path(p) for p in sources.get(SPAM, [])]
        split = sources.get("split", "all")
        table = sources.get("csv")
    if not (ham and spam) and not table and not args.with_feedback:
        raise CommandError(
            "give both --ham PATH... and --spam PATH..., or --csv FILE with --text and "
            "--label (or --with-feedback)"
        )
    samples, labels = _spam_samples(ham, spam, table, split)
    feedback, upto = _feedback(settings, agent_labels.SPAM_KIND) if args.with_feedback else ([], 0)
    samples += [s for s, _ in feedback]
    labels += [label for _, label in feedback]
    model = train_spam(samples, labels, args.target_fpr)
    model.meta["sources"] = {
        HAM: [str(p.resolve()) for p in ham],
        SPAM: [str(p.resolve()) for p in spam],
        "split": split,
        "csv": None if table is None else {**table, "path": str(Path(table["path"]).resolve())},
        "feedback": len(feedback),
        "labels_upto": upto,
    }
    save(model, path)
    held = model.meta["held_back"]
    print(
        f"spam model: {labels.count(HAM)} ham, {labels.count(SPAM)} spam "
        f"({len(feedback)} from agents) in {model.meta['training_seconds']}s; "
        f"threshold {model.threshold:.4f} (held-back ham false positives "
        f"{held['ham_false_positive_rate']:.2%}, spam recall {held['spam_recall']:.2%}); "
        f"saved to {path} ({path.stat().st_size / 1e6:.1f} MB)"
    )
    return 0


def _train_category(settings: Settings, args: argparse.Namespace) -> int:
    from postdesk.daemon.classify.model import train_category
    from postdesk.daemon.classify.persist import save

    if not 0 <= args.floor <= 1:
        raise CommandError("--floor: expected a probability between 0 and 1, e.g. 0.5")
    if args.from_tickets:
        examples, upto = _feedback(settings, agent_labels.CATEGORY_KIND)
        samples, labels = [s for s, _ in examples], [label for _, label in examples]
        source: dict[str, Any] = {"tickets": len(samples), "labels_upto": upto}
    elif args.csv is not None:
        table = read_csv(args.csv, _columns(args.text), args.label, args.split)
        samples, labels = table.samples, table.labels
        source = {
            "csv": str(args.csv.resolve()),
            "text": args.text,
            "label": args.label,
            "split": args.split,
        }
    else:
        raise CommandError("give --csv FILE (with --text and --label) or --from-tickets")
    model = train_category(samples, labels, args.floor)
    model.meta["sources"] = source
    path = model_path(settings.data_dir, "category")
    save(model, path)
    print(
        f"category model: {len(samples)} examples, {len(model.classes)} categories, "
        f"floor {model.threshold} in {model.meta['training_seconds']}s; saved to {path} "
        f"({path.stat().st_size / 1e6:.1f} MB)"
    )
    return 0


def evaluate(settings: Settings, args: argparse.Namespace) -> int:
    """``postdesk evaluate spam|category``: the current model on labelled data."""
    from postdesk.daemon.classify.metrics import category_metrics, confusion_lines, spam_metrics
    from postdesk.daemon.classify.persist import ModelFileError, load

    try:
        model = load(model_path(settings.data_dir, args.what))
        if args.what == "spam":
            if not (args.ham and args.spam) and args.csv is None:
                raise CommandError(
                    "give both --ham PATH... and --spam PATH..., or --csv FILE with --text "
                    "and --label"
                )
            samples, labels = _spam_samples(args.ham, args.spam, _table(args), args.split)
            started = time.monotonic()
            result = spam_metrics(model.spam_scores(samples), labels, model.threshold)
        else:
            if args.csv is None:
                raise CommandError("give --csv FILE (with --text and --label)")
            table = read_csv(args.csv, _columns(args.text), args.label, args.split)
            samples, labels = table.samples, table.labels
            started = time.monotonic()
            ranked = model.categories(samples)
            result = category_metrics(
                [c for c, _ in ranked], labels, [model.confident(s) for _, s in ranked]
            )
    except (SourceError, ModelFileError) as error:
        raise CommandError(str(error)) from None
    result["seconds"] = round(time.monotonic() - started, 3)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for key, value in result.items():
        if key == "confusion":
            print("confusion (rows: true, columns: predicted):")
            print("\n".join(confusion_lines(value)))
        elif key == "counts":
            print("counts: " + ", ".join(f"{k} {v}" for k, v in value.items()))
        else:
            print(f"{key}: {value}")
    return 0


def classify_file(settings: Settings, args: argparse.Namespace) -> int:
    """``postdesk classify FILE``: the verdict of the current models on one message."""
    try:
        raw = args.file.read_bytes()
    except OSError as error:
        raise CommandError(f"{args.file}: {error.strerror or error}") from None
    cache = ModelCache(settings.data_dir)
    if cache.get("spam") is None and cache.get("category") is None:
        raise CommandError(
            f"no model under {settings.data_dir / 'models'}: run 'postdesk train spam'"
        )
    try:
        parsed = parse_message(raw)
    except MessageRejected as error:
        raise CommandError(f"{args.file}: cannot be parsed: {error.reason}") from None
    verdict = judge(cache, parsed, explain=args.explain)
    result: dict[str, Any] = {
        "spam": verdict.spam,
        "spam_score": None if verdict.spam_score is None else round(verdict.spam_score, 5),
        "category": verdict.category,
        "category_score": None
        if verdict.category_score is None
        else round(verdict.category_score, 5),
    }
    if args.explain:
        result["explain"] = [{"feature": f, "weight": w} for f, w in verdict.explanation]
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for key, value in result.items():
        if key != "explain":
            print(f"{key}: {value}")
    for item in result.get("explain", []):
        print(f"  {item['weight']:+.4f}  {item['feature']}")
    return 0


# --- helpers ---


def _columns(text: str) -> list[str]:
    columns = [c.strip() for c in text.split(",") if c.strip()]
    if not columns:
        raise CommandError("--text: name one or more columns, e.g. subject,body")
    return columns


def _table(args: argparse.Namespace) -> dict[str, str] | None:
    """The CSV table given (its path, text columns and label column), or None."""
    if args.csv is None:
        return None
    return {"path": str(args.csv), "text": args.text, "label": args.label}


def _spam_samples(
    ham: Sequence[Path], spam: Sequence[Path], table: dict[str, str] | None, split: str
) -> tuple[list[Sample], list[str]]:
    """Samples and labels of the ham and spam mail under the paths, and of the rows of a
    spam ``table`` (its path, text columns and label column)."""
    samples, labels = _mail_samples({HAM: ham, SPAM: spam}, split)
    if table is not None:
        rows = read_csv(Path(table["path"]), _columns(table["text"]), table["label"], split)
        samples += rows.samples
        labels += spam_labels(rows.labels, table["label"])
    return samples, labels


def _mail_samples(paths: dict[str, Sequence[Path]], split: str) -> tuple[list[Sample], list[str]]:
    """Samples and labels of every message under ``paths`` (label -> paths), with progress."""
    from tqdm import tqdm

    samples: list[Sample] = []
    labels: list[str] = []
    for label, where in paths.items():
        if not where:
            continue
        for _name, raw in tqdm(
            raw_messages(list(where), split), desc=f"reading {label}", unit=" msg", disable=None
        ):
            sample = featurise(raw)
            if sample is not None:
                samples.append(sample)
                labels.append(label)
    return samples, labels


def _feedback(settings: Settings, kind: str) -> tuple[list[tuple[Sample, str]], int]:
    """Samples from the messages agents labelled (``kind``: spam or category labels), and the
    id of the newest label of that kind."""
    reader = {
        agent_labels.SPAM_KIND: agent_labels.spam_examples,
        agent_labels.CATEGORY_KIND: agent_labels.category_examples,
    }[kind]
    engine = make_engine(settings.database_url)
    try:
        upgrade_schema(engine)
        with session_factory(engine)() as session:
            upto = agent_labels.latest_id(session, kind)
            examples: Iterable[tuple[bytes, str]] = reader(session, settings.data_dir)
            found = [(featurise(raw), label) for raw, label in examples]
    finally:
        engine.dispose()
    return [(sample, label) for sample, label in found if sample is not None], upto


def model_status(settings: Settings) -> list[tuple[str, str | None, str]]:
    """(check name, error or None, detail) per model, for ``postdesk check``; scikit-learn and
    skops are imported only when a model file exists."""
    found: list[tuple[str, str | None, str]] = []
    for kind in KINDS:
        path = model_path(settings.data_dir, kind)
        if not path.exists():
            found.append((f"{kind} model", None, f"none at {path} (run 'postdesk train {kind}')"))
            continue
        from postdesk.daemon.classify.persist import ModelFileError, load

        try:
            found.append((f"{kind} model", None, _describe(load(path))))
        except ModelFileError as error:
            found.append((f"{kind} model", str(error), ""))
    return found


def _describe(model: Model) -> str:
    meta = model.meta
    counts = ", ".join(f"{n} {label}" for label, n in meta.get("counts", {}).items())
    if model.kind == "spam":
        rule = f"threshold {model.threshold:.4f}"
    else:
        rule = f"{len(model.classes)} categories, floor {model.threshold}"
    return f"trained {meta.get('trained_at', '?')} on {counts}; {rule}"
