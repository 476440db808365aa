"""One message through a trained model without scikit-learn's per-call machinery.

The numbers are the scikit-learn objects' own (``HashingVectorizer`` -> ``TfidfTransformer``
-> ``LinearSVC`` -> sigmoid calibration), computed in the same floating-point types, but
without the input validation and sparse-matrix building that cost milliseconds per message.

Tokens become columns by the hash ``HashingVectorizer`` uses (signed MurmurHash3 of the UTF-8
bytes, seed 0); the columns are shared by every model with the same hasher settings, so the
spam and the category model read one message's tokens once. Word unigrams and bigrams are
counted first and each distinct one is hashed once (mail repeats its words). Character n-grams
are remembered per word in a bounded memo (all the n-grams of a word as one packed array), so
a known word costs one look-up instead of a dozen hashes.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import mmh3
import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer

from postdesk.daemon.classify.names import SPAM

if TYPE_CHECKING:
    from postdesk.daemon.classify.model import Model

Array = np.ndarray[Any, Any]
MEMO_LIMIT = 20_000  # words per memo generation: at most ~8 MB for two generations
_WORD_TOKENS = re.compile(r"(?u)\b\w\w+\b")  # the vectoriser's default token_pattern
# its tokens are the runs of word characters longer than one: found without testing word
# boundaries, and for ASCII text without the regular-expression engine at all (lower-case the
# letters, blank everything but letters, digits and "_", split)
_WORD_RUNS = re.compile(r"\w+")
_ASCII_WORDS = (
    bytes(
        ord(chr(c).lower()) if chr(c).isalnum() or chr(c) == "_" else ord(" ") for c in range(128)
    )
    + b" " * 128
)


class _Memo(dict[str, bytes]):
    """A bounded dict that computes a missing entry with ``make`` and keeps it.

    When it holds ``MEMO_LIMIT`` entries they become the previous generation and it starts
    again empty; an entry found in the previous generation moves back, so what is in use
    survives and the memory stays below two generations.
    """

    def __init__(self, make: Callable[[str], bytes]) -> None:
        super().__init__()
        self.make = make
        self.previous: dict[str, bytes] = {}

    def __missing__(self, key: str) -> bytes:
        if len(self) >= MEMO_LIMIT:
            self.previous = dict(self)
            self.clear()
        value = self.previous.get(key)
        if value is None:
            value = self.make(key)
        self[key] = value
        return value


Tokens = Callable[[str], tuple[Array, Array | None]]


class Columns:
    """The hashed columns of a text for one hasher's settings: (columns, counts), columns
    sorted and distinct, counts summed over tokens that share a column (as the hasher does)."""

    def __init__(self, hasher: HashingVectorizer) -> None:
        self.size = int(hasher.n_features)
        self.grams = _Memo(self._word_grams)  # word -> its character n-grams' columns
        self.tokens = _tokenizer(hasher, self)
        self._last: tuple[str, tuple[Array, Array]] | None = None

    def columns(self, hashes: Array) -> Array:
        """Signed 32-bit token hashes -> columns, as ``HashingVectorizer``'s C code maps them
        (``abs`` in 64 bits also gives its answer for -2**31)."""
        return np.abs(hashes.astype(np.int64)) % self.size

    def column(self, token: str) -> int:
        """The column of one token."""
        return int(self.columns(np.array([mmh3.hash(token)]))[0])

    def _word_grams(self, word: str) -> bytes:
        """The columns of every 3-5 character n-gram of one word, packed as int32 (Python's
        ``abs`` of -2**31 is 2**31, as in :meth:`columns`)."""
        size = self.size
        return array("i", [abs(h) % size for h in map(mmh3.hash, _char_wb_3_5(word))]).tobytes()

    def of(self, text: str) -> tuple[Array, Array]:
        """(sorted distinct columns, their counts) of ``text``; the last answer is reused when
        the same text object is asked again (the spam then the category model)."""
        last = self._last
        if last is not None and last[0] is text:
            return last[1]
        columns, counts = self.tokens(text)
        if counts is None:
            found = np.unique(columns, return_counts=True)
        else:
            distinct, where = np.unique(columns, return_inverse=True)
            found = (distinct, np.bincount(where.ravel(), weights=counts))
        self._last = (text, found)
        return found


def _tokenizer(hasher: HashingVectorizer, columns: Columns) -> Tokens:
    """Text -> (columns, their counts, None for one each; a column may repeat), by a short
    route for the two settings ``model._hashers`` uses for text, else by the hasher's own
    analyzer."""
    params = hasher.get_params()
    plain = (
        params["lowercase"]
        and params["preprocessor"] is None
        and params["tokenizer"] is None
        and params["strip_accents"] is None
        and params["input"] == "content"
    )
    if plain and params["analyzer"] == "char_wb" and params["ngram_range"] == (3, 5):
        grams = columns.grams

        def chars(text: str) -> tuple[Array, None]:
            packed = b"".join([grams[word] for word in text.lower().split()])
            return np.frombuffer(packed, dtype=np.int32), None

        return chars
    if (
        plain
        and params["analyzer"] == "word"
        and params["ngram_range"] == (1, 2)
        and params["stop_words"] is None
        and params["token_pattern"] == _WORD_TOKENS.pattern
    ):

        def words(text: str) -> tuple[Array, Array]:
            if text.isascii():  # mmh3 hashes the same bytes as for the str
                grams, counts = _unigrams_bigrams(text.encode().translate(_ASCII_WORDS).split())
            else:
                grams, counts = _unigrams_bigrams(_WORD_RUNS.findall(text.lower()))
            hashes = np.fromiter(map(mmh3.hash, grams), dtype=np.int64, count=len(grams))
            return columns.columns(hashes), counts

        return words
    analyzer = cast(Callable[[str], list[str]], hasher.build_analyzer())
    return lambda text: (columns.columns(np.array(list(map(mmh3.hash, analyzer(text))))), None)


def _unigrams_bigrams(runs: list[str] | list[bytes]) -> tuple[list[Any], Array]:
    """The distinct tokens (``runs`` longer than one character) and distinct pairs of
    neighbouring tokens (``"a b"``), with their counts.

    Each run gets a number; runs of one character are dropped from the numbers, and a pair
    is the number ``first * distinct + second``, so counting is numpy's and only the distinct
    tokens and pairs stay Python objects.
    """
    number: dict[Any, int] = dict.fromkeys(runs, 0)
    distinct: list[Any] = list(number)
    size = len(distinct)
    number.update(zip(distinct, range(size), strict=True))
    ids = np.fromiter(map(number.__getitem__, runs), dtype=np.int64, count=len(runs))
    long = np.fromiter(map(len, distinct), dtype=np.int64, count=size) > 1
    ids = ids[long[ids]]
    pairs, pair_counts = np.unique(ids[:-1] * size + ids[1:], return_counts=True)
    counts = np.bincount(ids, minlength=size)
    kept = np.flatnonzero(counts)
    space = b" " if distinct and isinstance(distinct[0], bytes) else " "
    word = distinct.__getitem__
    grams = list(map(word, kept.tolist()))  # no Python loop per token or pair below either
    firsts, seconds = map(word, (pairs // size).tolist()), map(word, (pairs % size).tolist())
    grams += map(space.join, zip(firsts, seconds, strict=True))
    return grams, np.concatenate([counts[kept], pair_counts])


def _char_wb_3_5(word: str) -> list[str]:
    """The 3-5 character n-grams of one (lower-cased) word padded with spaces, as
    ``analyzer="char_wb"`` makes them: a word shorter than n counts once, whole."""
    padded = f" {word} "
    size = len(padded)
    grams: list[str] = []
    for n in (3, 4, 5):
        if size <= n:
            grams.append(padded)
            break
        grams += [padded[i : i + n] for i in range(size - n + 1)]
    return grams


_SHARED: dict[str, Columns] = {}


def columns_for(hasher: HashingVectorizer) -> Columns:
    """The shared :class:`Columns` for ``hasher``'s settings."""
    key = repr(sorted(hasher.get_params().items()))
    found = _SHARED.get(key)
    if found is None:
        found = _SHARED[key] = Columns(hasher)
    return found


class _Row:
    """One sample's hashed counts, joined over the blocks: the columns, their sublinear term
    frequencies (``1 + log(count)`` in the hashers' dtype) and where each block starts."""

    def __init__(self, blocks: Sequence[tuple[str, Columns, int]], dtype: Any, sample: object):
        found: list[Array] = []
        counts: list[Array] = []
        for name, columns, offset in blocks:
            block_found, block_counts = columns.of(getattr(sample, name))
            if block_found.size:
                found.append(block_found + offset)
                counts.append(block_counts)
        self.lengths = [len(part) for part in found]
        self.where = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        self.tf = np.log(np.concatenate(counts).astype(dtype)) if found else np.zeros(0, dtype)
        self.tf += dtype.type(1.0)
        self.starts = np.cumsum([0, *self.lengths[:-1]])


_LAST_ROW: list[tuple[object, object, _Row]] = []  # (sample, blocks, row): the last one asked


def _row_of(blocks: list[tuple[str, Columns, int]], dtype: Any, sample: object) -> _Row:
    """The :class:`_Row` of ``sample``, reused when the next model with the same blocks asks
    for the same sample object (the spam then the category model)."""
    key = (blocks, dtype)
    if _LAST_ROW and _LAST_ROW[0][0] is sample and _LAST_ROW[0][1] == key:
        return _LAST_ROW[0][2]
    row = _Row(blocks, dtype, sample)
    _LAST_ROW[:] = [(sample, key, row)]
    return row


class FastPath:
    """One sample through ``model``: decision values and calibrated class probabilities.

    The blocks' hashed counts are joined into one row; TF-IDF (sublinear) and the l2 norm of
    each block are computed in the hashers' dtype (float32) with the norm summed in float64,
    as ``TfidfTransformer`` and ``normalize`` do; the decision is that row times the
    coefficients, the probabilities the calibrators' sigmoids of it.

    The coefficients are kept as a compact table: one row per column that some class weighs
    (a category model weighs a few percent of its columns; its full matrix is tens of MB, so
    reading it column by column missed the cache for every class), row 0 all zeros for the
    columns no class weighs.
    """

    def __init__(self, model: Model, blocks: Sequence[str]) -> None:
        calibrated = model.classifier.calibrated_classifiers_[0]
        estimator = calibrated.estimator
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        weighed = np.flatnonzero(coef.any(axis=0))
        self.rows = np.zeros(coef.shape[1], dtype=np.int32)
        self.rows[weighed] = np.arange(1, weighed.size + 1, dtype=np.int32)
        self.weights = np.vstack([np.zeros((1, coef.shape[0])), coef[:, weighed].T])
        self.intercept = np.asarray(estimator.intercept_, dtype=np.float64)
        self.sigmoids = np.array([(float(c.a_), float(c.b_)) for c in calibrated.calibrators])
        self.classes = model.classes
        self.spam_column = self.classes.index(SPAM) if SPAM in self.classes else None
        self.dtype = np.dtype(model.hashers[blocks[0]].dtype)
        self.idf = np.concatenate([np.asarray(model.weights[name].idf_) for name in blocks])
        self.blocks: list[tuple[str, Columns, int]] = []
        offset = 0
        for name in blocks:
            hasher = model.hashers[name]
            self.blocks.append((name, columns_for(hasher), offset))
            offset += int(hasher.n_features)

    def score(self, sample: object) -> tuple[Array, Array]:
        """(decision values, class probabilities) of one sample."""
        row = _row_of(self.blocks, self.dtype, sample)
        decision = self.intercept.copy()
        if row.lengths:
            where, dtype = row.where, self.dtype
            values = (row.tf * self.idf[where]).astype(dtype, copy=False)
            norms = np.sqrt(np.add.reduceat(np.square(values).astype(np.float64), row.starts))
            scaled = (values.astype(np.float64) / np.repeat(norms, row.lengths)).astype(dtype)
            decision += scaled.astype(np.float64) @ self.weights[self.rows[where]]
        calibrated = 1.0 / (1.0 + np.exp(self.sigmoids[:, 0] * decision + self.sigmoids[:, 1]))
        if decision.shape[0] == 1:
            return decision, np.array([1.0 - calibrated[0], calibrated[0]])
        total = float(calibrated.sum())
        size = len(calibrated)
        return decision, calibrated / total if total > 0 else np.full(size, 1.0 / size)
