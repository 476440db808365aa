"""Classifier benchmark: ours against SpamAssassin 4 and against category baselines.

Run from the repository root: ``python bench/bench_classify.py [--corpus DIR] [--no-sa]``.
The corpus is ``$POSTDESK_CORPUS`` or ``../shared/corpus``. Spam: trained on the *train* part
of the fixed split (``daemon/classify/sources.py``: SHA-256 of the file name), measured on the
*test* part that training never saw: spam recall at our threshold (chosen for a held-back ham
false-positive rate <= 0.2%), F1, messages/s classified including parsing (one at a time, as
the pipeline does), training time and model size. SpamAssassin (Debian ``spamassassin``, local
rules only, no network tests), when installed: ``sa-learn`` Bayes on the same train part, then
``spamd -L`` + ``spamc`` on the test part, at its default threshold (5.0). Categories: our model
against TF-IDF + LinearSVC and the majority class, macro-F1 on the test part.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.svm import LinearSVC

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from postdesk.daemon.classify import model as classifier
from postdesk.daemon.classify import persist
from postdesk.daemon.classify.features import from_message
from postdesk.daemon.classify.metrics import spam_metrics
from postdesk.daemon.classify.sources import featurise, raw_messages, read_csv
from postdesk.daemon.mail.parse import parse_message

HAM = ("easy-ham-1", "easy-ham-2", "hard-ham-1")
SPAM = ("spam-1", "spam-2")
CATEGORY_SETS = (
    ("bitext", "bitext/TrainingdatasetBitextsample.csv", ["utterance"], "category"),
    ("tickets", "tickets/dataset-tickets-multi-lang-4-20k.csv", ["subject", "body"], "queue"),
)


def corpus_dir(given: str | None) -> Path:
    """The shared corpus folder."""
    root = Path(__file__).resolve().parents[2]
    return Path(given or os.environ.get("POSTDESK_CORPUS") or root / "shared" / "corpus")


def messages(base: Path, split: str) -> tuple[list[bytes], list[str]]:
    """Raw messages and labels of one part of the SpamAssassin corpus."""
    raws: list[bytes] = []
    labels: list[str] = []
    for folders, label in ((HAM, "ham"), (SPAM, "spam")):
        for _name, raw in raw_messages([base / f for f in folders], split):
            raws.append(raw)
            labels.append(label)
    return raws, labels


def bench_spam(base: Path) -> tuple[dict[str, float], classifier.Model, list[bytes]]:
    """Train on the train part, measure on the test part; print and return the numbers (and
    the model and every fourth message of the train part, which the one-message path has not
    seen yet, for the worker's path)."""
    train_raw, train_labels = messages(base, "train")
    test_raw, test_labels = messages(base, "test")
    started, cpu = time.monotonic(), time.process_time()
    pairs = [(featurise(raw), label) for raw, label in zip(train_raw, train_labels, strict=True)]
    samples = [s for s, _ in pairs if s is not None]
    labels = [label for s, label in pairs if s is not None]
    model = classifier.train_spam(samples, labels)
    train_wall, train_cpu = time.monotonic() - started, time.process_time() - cpu
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spam.skops"
        persist.save(model, path)
        size_mb = path.stat().st_size / 1e6

    model.one(from_message(parse_message(test_raw[0])))  # the first call sets up the fast path
    started, cpu = time.monotonic(), time.process_time()
    scores = []
    for raw in test_raw:  # one at a time, parsing included, as the pipeline does
        scores.append(model.one(from_message(parse_message(raw)))[2])
    wall, used = time.monotonic() - started, time.process_time() - cpu
    split = _split_timings(model, test_raw)
    result = spam_metrics(scores, test_labels, model.threshold)
    print(f"spam: train {len(samples)} messages, test {len(test_raw)} (fixed split, unseen)")
    print(
        f"  ours: threshold {model.threshold:.4f}  recall {result['spam_recall']:.4f}  "
        f"ham FPR {result['ham_false_positive_rate']:.4%}  precision {result['precision']:.4f}  "
        f"F1 {result['f1']:.4f}  ({result['counts']})"
    )
    print(
        f"  ours: {len(test_raw) / used:.0f} msg/s per CPU incl. parsing ({len(test_raw) / wall:.0f}"
        f" msg/s wall on this machine, load average {os.getloadavg()[0]:.1f})"
    )
    print(
        "  ours, per message (CPU): "
        + ", ".join(f"{name} {1000 * seconds:.3f} ms" for name, seconds in split.items())
        + f"; classification alone (featurise + predict one) "
        f"{1 / (split['featurise'] + split['predict one']):.0f} msg/s"
    )
    print(
        f"  ours: training {train_cpu:.1f} s CPU ({train_wall:.1f} s wall) incl. reading and "
        f"parsing; model file {size_mb:.1f} MB"
    )
    numbers = {
        "recall": result["spam_recall"],
        "fpr": result["ham_false_positive_rate"],
        "f1": result["f1"],
        "per_second": len(test_raw) / used,
    }
    return numbers, model, train_raw[::4]


def _split_timings(model: classifier.Model, raws: list[bytes]) -> dict[str, float]:
    """CPU seconds per message: the mail parse, the features, the model one message at a time
    (the pipeline's way) and the model on all of them at once (``evaluate``'s way)."""
    cpu = time.process_time()
    parsed = [parse_message(raw) for raw in raws]
    parse = time.process_time() - cpu
    cpu = time.process_time()
    samples = [from_message(one) for one in parsed]
    featurise = time.process_time() - cpu
    cpu = time.process_time()
    for sample in samples:
        model.one(sample)
    one = time.process_time() - cpu
    cpu = time.process_time()
    model.spam_scores(samples)
    batch = time.process_time() - cpu
    count = len(raws)
    return {
        "parse": parse / count,
        "featurise": featurise / count,
        "predict one": one / count,
        "predict batch": batch / count,
    }


def bench_spamassassin(base: Path, ours: dict[str, float]) -> None:
    """SpamAssassin with Bayes trained on the same train part, scored on the same test part.

    ``sa-learn`` fills a Bayes database in a temporary folder; ``spamd`` (local tests only, on
    a loopback port) scores the test part through ``spamc``, one message per call.
    """
    tools = ("sa-learn", "spamd", "spamc")
    if any(shutil.which(tool) is None for tool in tools):
        print("spamassassin: not installed (Debian package 'spamassassin'); side skipped")
        return
    train_raw, train_labels = messages(base, "train")
    test_raw, test_labels = messages(base, "test")
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        site = home / "site"
        site.mkdir()
        for name in Path("/etc/spamassassin").glob("*"):  # the plugins (Bayes among them)
            if name.suffix in (".pre", ".cf") and name.name != "local.cf":
                shutil.copy(name, site / name.name)
        (site / "local.cf").write_text(
            f"bayes_path {home}/bayes/bayes\nbayes_file_mode 0777\nuse_bayes 1\n"
            "bayes_auto_learn 0\nbayes_auto_expire 0\nlock_method flock\n"
        )
        for label in ("ham", "spam"):
            box = home / label
            box.mkdir()
            for index, (raw, lab) in enumerate(zip(train_raw, train_labels, strict=True)):
                if lab == label:
                    (box / f"{index}.eml").write_bytes(raw)
        started = time.monotonic()
        for label in ("ham", "spam"):
            subprocess.run(
                ["sa-learn", "-L", "--siteconfigpath", str(site), f"--{label}", str(home / label)],
                check=True,
                capture_output=True,
            )
        learn = time.monotonic() - started
        os.chmod(home, 0o755)
        for path in [home / "bayes", *(home / "bayes").iterdir()]:
            os.chmod(path, 0o777)
        port = _free_port()
        daemon = subprocess.Popen(
            [
                "spamd",
                "-L",
                "-i",
                "127.0.0.1",
                "-p",
                str(port),
                "-m",
                "2",
                "--siteconfigpath",
                str(site),
                "--nouser-config",
                "-u",
                "nobody",
                "-s",
                "stderr",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port)
            started = time.monotonic()
            flagged = []
            for raw in test_raw:
                done = subprocess.run(
                    ["spamc", "-d", "127.0.0.1", "-p", str(port), "-c"],
                    input=raw,
                    capture_output=True,
                )
                flagged.append(1.0 if done.returncode == 1 else 0.0)
            wall = time.monotonic() - started
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    result = spam_metrics(flagged, test_labels, 0.5)
    print(
        f"  SpamAssassin (local rules + Bayes): recall {result['spam_recall']:.4f}  ham FPR "
        f"{result['ham_false_positive_rate']:.4%}  F1 {result['f1']:.4f}  "
        f"{len(test_raw) / wall:.1f} msg/s wall; sa-learn {learn:.1f} s"
    )
    print(
        f"  ratio ours/SpamAssassin: recall {ours['recall'] / max(result['spam_recall'], 1e-9):.3f}"
        f"  F1 {ours['f1'] / max(result['f1'], 1e-9):.3f}"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"spamd did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def bench_categories(base: Path) -> classifier.Model | None:
    """Macro-F1 of ours, TF-IDF + LinearSVC and the majority class on each category set;
    returns the last category model trained (the ticket queues, as a help desk would use)."""
    model = None
    for name, relative, columns, label in CATEGORY_SETS:
        path = base / "categories" / relative
        if not path.is_file():
            print(f"category {name}: {path} absent; skipped")
            continue
        train = read_csv(path, columns, label, "train")
        test = read_csv(path, columns, label, "test")
        started = time.process_time()
        model = classifier.train_category(train.samples, train.labels)
        seconds = time.process_time() - started
        ranked = model.categories(test.samples)
        ours = f1_score(test.labels, [c for c, _ in ranked], average="macro")
        coverage = sum(model.confident(s) for _, s in ranked) / len(ranked)
        vectorizer = TfidfVectorizer(sublinear_tf=True)
        svm = LinearSVC().fit(
            vectorizer.fit_transform([s.words for s in train.samples]), train.labels
        )
        baseline = f1_score(
            test.labels,
            svm.predict(vectorizer.transform([s.words for s in test.samples])),
            average="macro",
        )
        majority = Counter(train.labels).most_common(1)[0][0]
        floor = f1_score(test.labels, [majority] * len(test.labels), average="macro")
        print(
            f"category {name}: train {len(train.labels)}, test {len(test.labels)}, "
            f"{len(set(train.labels))} classes; macro-F1 ours {ours:.4f}  TF-IDF+LinearSVC "
            f"{baseline:.4f}  majority {floor:.4f}  (ratio ours/baseline {ours / baseline:.3f}; "
            f"{coverage:.0%} above the {model.threshold} floor; training {seconds:.1f} s CPU)"
        )
    return model


def bench_worker_path(
    spam: classifier.Model, category: classifier.Model | None, raws: list[bytes]
) -> None:
    """CPU per message of what the worker's classify step does after the parse: the features,
    then the spam and the category model on that one message (``judge``)."""
    models = [spam] if category is None else [spam, category]
    parsed = [parse_message(raw) for raw in raws]
    cpu = time.process_time()
    for one in parsed:
        sample = from_message(one)
        for model in models:
            model.one(sample)
    used = (time.process_time() - cpu) / len(parsed)
    print(
        f"worker path (features + {' + '.join(m.kind for m in models)} model, one message at a "
        f"time): {1000 * used:.3f} ms CPU per message"
    )


def main() -> None:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help="the shared corpus folder")
    parser.add_argument("--no-sa", action="store_true", help="skip the SpamAssassin side")
    args = parser.parse_args()
    base = corpus_dir(args.corpus)
    if not (base / "spamassassin").is_dir():
        sys.exit(f"no corpus at {base} (give --corpus or set POSTDESK_CORPUS)")
    ours, spam_model, unseen = bench_spam(base / "spamassassin")
    if not args.no_sa:
        bench_spamassassin(base / "spamassassin", ours)
    bench_worker_path(spam_model, bench_categories(base), unseen)


if __name__ == "__main__":
    main()
