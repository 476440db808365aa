"""Train and apply the spam and category models (scikit-learn, linear, calibrated).

A model reads the three texts of :class:`~postdesk.daemon.classify.features.Sample`: each is
hashed (words: unigrams and bigrams; chars: 3-5 character n-grams within word boundaries;
head: the header tokens), weighted by TF-IDF, and the blocks side by side feed a linear SVM
whose scores are calibrated into probabilities (``CalibratedClassifierCV``, sigmoid).

The spam threshold is chosen at training time: out-of-fold probabilities on the training data
(models fitted without the part they score) give the ham scores, and the threshold is set so
that at most ``target_fpr`` of that held-back ham scores above it; never below 0.5.
A category whose probability is below the model's ``floor`` is unknown (None).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from postdesk.daemon.classify.fastpath import FastPath, columns_for
from postdesk.daemon.classify.features import Sample
from postdesk.daemon.classify.names import DEFAULT_FLOOR, DEFAULT_TARGET_FPR, HAM, SPAM

FORMAT = 1
BLOCKS = ("words", "chars", "head")
SEED = 20240501


Counts = dict[str, sp.csr_matrix]


class TrainingError(Exception):
    """The data given cannot train a model (too little, one class only, ...)."""


@dataclass
class Model:
    """A trained model: its vectorisers, classifier, decision rule and training metadata."""

    kind: str  # "spam" or "category"
    hashers: dict[str, HashingVectorizer]
    weights: dict[str, TfidfTransformer]
    classifier: CalibratedClassifierCV
    threshold: float  # spam: probability above which a message is spam; category: the floor
    meta: dict[str, Any] = field(default_factory=dict)
    _fast: FastPath | None = field(default=None, repr=False, compare=False)

    @property
    def classes(self) -> list[str]:
        """The labels the classifier knows, in its column order."""
        return [str(label) for label in self.classifier.classes_]

    def matrix(self, samples: Sequence[Sample]) -> sp.csr_matrix:
        """The feature matrix of ``samples``."""
        blocks = [
            self.weights[name].transform(
                self.hashers[name].transform([getattr(s, name) for s in samples])
            )
            for name in BLOCKS
        ]
        return sp.hstack(blocks, format="csr")

    def probabilities(self, samples: Sequence[Sample]) -> np.ndarray[Any, Any]:
        """One row of class probabilities per sample."""
        return np.asarray(self.classifier.predict_proba(self.matrix(samples)))

    def spam_scores(self, samples: Sequence[Sample]) -> list[float]:
        """The probability that each sample is spam (spam model only)."""
        column = self.classes.index(SPAM)
        return [float(p) for p in self.probabilities(samples)[:, column]]

    def categories(self, samples: Sequence[Sample]) -> list[tuple[str, float]]:
        """(category, its calibrated probability) per sample; see :meth:`confident`.

        The category is the linear model's own choice (the largest decision value, which
        keeps small classes visible); the calibrated probability says how sure it is.
        """
        matrix = self.matrix(samples)
        probabilities = np.asarray(self.classifier.predict_proba(matrix))
        decision = np.asarray(
            self.classifier.calibrated_classifiers_[0].estimator.decision_function(matrix)
        )
        best = (decision > 0).astype(int) if decision.ndim == 1 else np.argmax(decision, axis=1)
        classes = self.classes
        return [
            (classes[int(b)], float(row[int(b)]))
            for b, row in zip(best, probabilities, strict=True)
        ]

    def prepare(self) -> None:
        """Set up the one-message path now rather than on the first message."""
        if self._fast is None:
            self._fast = FastPath(self, BLOCKS)

    def one(self, sample: Sample) -> tuple[str, float, float]:
        """For one message, fast (no per-call input validation): (the model's choice, its
        calibrated probability, the probability of "spam" or 0.0 for a category model)."""
        self.prepare()
        fast = self._fast
        assert fast is not None
        decision, probabilities = fast.score(sample)
        best = int(decision[0] > 0) if decision.shape[0] == 1 else int(np.argmax(decision))
        column = fast.spam_column
        spam = float(probabilities[column]) if column is not None else 0.0
        return fast.classes[best], float(probabilities[best]), spam

    def confident(self, score: float) -> bool:
        """True when a category with probability ``score`` clears the floor (else unknown)."""
        return score >= self.threshold

    def explain(self, sample: Sample, label: str, top: int = 10) -> list[tuple[str, float]]:
        """The features of ``sample`` that weighed most for ``label`` (block:feature, weight)."""
        estimator = self.classifier.calibrated_classifiers_[0].estimator
        coef = np.asarray(estimator.coef_)
        classes = self.classes
        if coef.shape[0] == 1:
            row = coef[0] if label == classes[1] else -coef[0]
        else:
            row = coef[classes.index(label)]
        x = self.matrix([sample])
        weights: dict[str, float] = {}
        offset = 0
        for name in BLOCKS:
            hasher = self.hashers[name]
            size = int(hasher.n_features)
            column_of = columns_for(hasher).column
            for token in sorted(set(hasher.build_analyzer()(getattr(sample, name)))):
                column = column_of(token)
                value = float(x[0, offset + column]) * float(row[offset + column])
                if value:
                    weights[f"{name}:{token.strip()}"] = value
            offset += size
        ranked = sorted(weights.items(), key=lambda item: abs(item[1]), reverse=True)
        return [(feature, round(weight, 4)) for feature, weight in ranked[:top]]


def _hashers() -> dict[str, HashingVectorizer]:
    common: dict[str, Any] = {"alternate_sign": False, "norm": None, "dtype": np.float32}
    return {
        "words": HashingVectorizer(n_features=2**19, ngram_range=(1, 2), **common),
        "chars": HashingVectorizer(
            n_features=2**18, analyzer="char_wb", ngram_range=(3, 5), **common
        ),
        "head": HashingVectorizer(
            n_features=2**16, token_pattern=r"\S+", lowercase=False, **common
        ),
    }


def _classifier(n_per_class: int) -> CalibratedClassifierCV:
    folds = max(2, min(3, n_per_class))
    return CalibratedClassifierCV(
        LinearSVC(C=0.5, class_weight="balanced", random_state=SEED),
        method="sigmoid",
        cv=folds,
        ensemble=False,
    )


def hash_counts(hashers: dict[str, HashingVectorizer], samples: Sequence[Sample]) -> Counts:
    """The hashed term counts of every block (computed once, sliced for each fold)."""
    return {name: hashers[name].transform([getattr(s, name) for s in samples]) for name in BLOCKS}


def _fit(
    kind: str,
    hashers: dict[str, HashingVectorizer],
    counts: Counts,
    labels: Sequence[str],
    threshold: float,
) -> Model:
    weights = {name: TfidfTransformer(sublinear_tf=True).fit(counts[name]) for name in BLOCKS}
    model = Model(kind, hashers, weights, _classifier(_smallest_class(labels)), threshold)
    matrix = sp.hstack([weights[name].transform(counts[name]) for name in BLOCKS], format="csr")
    model.classifier.fit(matrix, list(labels))
    return model


def _smallest_class(labels: Sequence[str]) -> int:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    if len(counts) < 2:
        raise TrainingError(f"need at least two classes to train, got {sorted(counts) or 'none'}")
    smallest = min(counts.values())
    if smallest < 2:
        raise TrainingError("need at least two examples of every class")
    return smallest


def train_spam(
    samples: Sequence[Sample],
    labels: Sequence[str],
    target_fpr: float = DEFAULT_TARGET_FPR,
    folds: int = 4,
) -> Model:
    """Train the spam model; the threshold meets ``target_fpr`` on held-back ham."""
    if set(labels) - {SPAM, HAM}:
        raise TrainingError("spam labels must be 'spam' or 'ham'")
    started = time.monotonic()
    smallest = _smallest_class(labels)
    hashers = _hashers()
    counts = hash_counts(hashers, samples)
    held_back = _out_of_fold_spam(hashers, counts, labels, max(2, min(folds, smallest)))
    threshold = choose_threshold(held_back, labels, target_fpr)
    model = _fit("spam", hashers, counts, labels, threshold)
    ham_scores = [s for s, label in zip(held_back, labels, strict=True) if label == HAM]
    spam_scores = [s for s, label in zip(held_back, labels, strict=True) if label == SPAM]
    model.meta = {
        "counts": {HAM: len(ham_scores), SPAM: len(spam_scores)},
        "target_fpr": target_fpr,
        "held_back": {
            "ham_false_positive_rate": _rate(ham_scores, threshold),
            "spam_recall": _rate(spam_scores, threshold),
            "folds": max(2, min(folds, smallest)),
        },
        "training_seconds": round(time.monotonic() - started, 2),
    }
    return model


def _out_of_fold_spam(
    hashers: dict[str, HashingVectorizer], counts: Counts, labels: Sequence[str], folds: int
) -> list[float]:
    """Spam probabilities of every sample from a model trained without its fold."""
    scores = np.zeros(len(labels))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    for fit_index, score_index in splitter.split(np.zeros(len(labels)), list(labels)):
        part = {name: counts[name][fit_index] for name in BLOCKS}
        model = _fit("spam", hashers, part, [labels[i] for i in fit_index], 0.5)
        held = sp.hstack(
            [model.weights[name].transform(counts[name][score_index]) for name in BLOCKS],
            format="csr",
        )
        column = model.classes.index(SPAM)
        scores[score_index] = model.classifier.predict_proba(held)[:, column]
    return [float(score) for score in scores]


def choose_threshold(scores: Sequence[float], labels: Sequence[str], target_fpr: float) -> float:
    """The lowest threshold (>= 0.5) at which at most ``target_fpr`` of ham scores above it."""
    ham = sorted((s for s, label in zip(scores, labels, strict=True) if label == HAM), reverse=True)
    allowed = math.floor(target_fpr * len(ham))
    if allowed >= len(ham):
        return 0.5
    return max(0.5, float(ham[allowed]))


def _rate(scores: Sequence[float], threshold: float) -> float:
    return round(sum(s > threshold for s in scores) / len(scores), 5) if scores else 0.0


def train_category(
    samples: Sequence[Sample], labels: Sequence[str], floor: float = DEFAULT_FLOOR
) -> Model:
    """Train the category model on any label set; predictions below ``floor`` are unknown."""
    started = time.monotonic()
    hashers = _hashers()
    model = _fit("category", hashers, hash_counts(hashers, samples), labels, floor)
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    model.meta = {
        "counts": dict(sorted(counts.items())),
        "training_seconds": round(time.monotonic() - started, 2),
    }
    return model
