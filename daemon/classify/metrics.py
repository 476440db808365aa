"""How well a model does on labelled data: the numbers ``postdesk evaluate`` prints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sklearn.metrics import accuracy_score, f1_score

from postdesk.daemon.classify.names import HAM, SPAM


def spam_metrics(
    scores: Sequence[float], labels: Sequence[str], threshold: float
) -> dict[str, Any]:
    """Precision, recall, F1, ham false-positive rate and counts at ``threshold``."""
    flagged = [score > threshold for score in scores]
    tp = sum(f and label == SPAM for f, label in zip(flagged, labels, strict=True))
    fp = sum(f and label == HAM for f, label in zip(flagged, labels, strict=True))
    spam = sum(label == SPAM for label in labels)
    ham = len(labels) - spam
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / spam if spam else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": round(threshold, 6),
        "precision": round(precision, 5),
        "recall": round(recall, 5),
        "f1": round(f1, 5),
        "ham_false_positive_rate": round(fp / ham, 5) if ham else 0.0,
        "spam_recall": round(recall, 5),
        "counts": {
            "ham": ham,
            "spam": spam,
            "true_positives": tp,
            "false_positives": fp,
            "false_negatives": spam - tp,
            "true_negatives": ham - fp,
        },
    }


def category_metrics(
    predicted: Sequence[str], truth: Sequence[str], confident: Sequence[bool]
) -> dict[str, Any]:
    """Accuracy, macro-F1 and the confusion table of the most likely categories, and how many
    predictions clear the confidence floor (``coverage``) and how accurate those are."""
    labels = sorted(set(truth))
    confusion: dict[str, dict[str, int]] = {label: {} for label in labels}
    for actual, guess in zip(truth, predicted, strict=True):
        row = confusion[actual]
        row[guess] = row.get(guess, 0) + 1
    sure = [(p, t) for p, t, c in zip(predicted, truth, confident, strict=True) if c]
    return {
        "count": len(truth),
        "accuracy": round(float(accuracy_score(truth, predicted)), 5) if truth else 0.0,
        "macro_f1": round(
            float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)), 5
        )
        if truth
        else 0.0,
        "coverage": round(len(sure) / len(truth), 5) if truth else 0.0,
        "accuracy_above_floor": round(sum(p == t for p, t in sure) / len(sure), 5) if sure else 0.0,
        "confusion": confusion,
    }


def confusion_lines(confusion: dict[str, dict[str, int]]) -> list[str]:
    """The confusion table as aligned text: one row per true label, one column per prediction."""
    columns = sorted({guess for row in confusion.values() for guess in row})
    width = max([len(c) for c in [*columns, *confusion]] + [5])
    lines = [" " * width + " " + " ".join(f"{c[:width]:>{width}}" for c in columns)]
    for actual, row in confusion.items():
        cells = " ".join(f"{row.get(c, 0):>{width}}" for c in columns)
        lines.append(f"{actual[:width]:<{width}} {cells}")
    return lines
