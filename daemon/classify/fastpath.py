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
# finds the same tokens, without testing word boundaries: a greedy run of two or more word
# characters starts after a non-word character (the scan moved past the ones before) and ends
# before one
_WORD_RUNS = re.compile(r"\w\w+")


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
            grams, counts = _unigrams_bigrams(_WORD_RUNS.findall(text.lower()))
            hashes = np.fromiter(map(mmh3.hash, grams), dtype=np.int64, count=len(grams))
            return columns.columns(hashes), counts

        return words
    analyzer = cast(Callable[[str], list[str]], hasher.build_analyzer())
    return lambda text: (columns.columns(np.array(list(map(mmh3.hash, analyzer(text))))), None)


def _unigrams_bigrams(tokens: list[str]) -> tuple[list[str], Array]:
    """The distinct tokens and distinct pairs of neighbours (``"a b"``) with their counts.

    Each token gets a number; a pair is the number ``first * distinct + second``, so pairs
    are counted by numpy and only the distinct ones become strings.
    """
    distinct = list(dict.fromkeys(tokens))
    size = len(distinct)
    number = dict(zip(distinct, range(size), strict=True))
    ids = np.fromiter(map(number.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    pairs, pair_counts = np.unique(ids[:-1] * size + ids[1:], return_counts=True)
    grams = distinct + [f"{distinct[p // size]} {distinct[p % size]}" for p in pairs.tolist()]
    return grams, np.concatenate([np.bincount(ids, minlength=size), pair_counts])


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


class FastPath:
    """One sample through ``model``: decision values and calibrated class probabilities.

    The blocks' hashed counts are joined into one row; TF-IDF (sublinear) and the l2 norm of
    each block are computed in the hashers' dtype (float32) with the norm summed in float64,
    as ``TfidfTransformer`` and ``normalize`` do; the decision is that row times the
    coefficients, the probabilities the calibrators' sigmoids of it.
    """

    def __init__(self, model: Model, blocks: Sequence[str]) -> None:
        calibrated = model.classifier.calibrated_classifiers_[0]
        estimator = calibrated.estimator
        self.coef = np.asarray(estimator.coef_, dtype=np.float64)
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
        found: list[Array] = []
        counts: list[Array] = []
        for name, columns, offset in self.blocks:
            block_found, block_counts = columns.of(getattr(sample, name))
            if block_found.size:
                found.append(block_found + offset)
                counts.append(block_counts)
        decision = self.intercept.copy()
        if found:
            lengths = [len(part) for part in found]
            where = np.concatenate(found)
            dtype = self.dtype
            tf = np.log(np.concatenate(counts).astype(dtype))
            tf += dtype.type(1.0)
            values = (tf * self.idf[where]).astype(dtype, copy=False)
            starts = np.cumsum([0, *lengths[:-1]])
            norms = np.sqrt(np.add.reduceat(np.square(values).astype(np.float64), starts))
            scaled = (values.astype(np.float64) / np.repeat(norms, lengths)).astype(dtype)
            decision += self.coef[:, where] @ scaled.astype(np.float64)
        calibrated = 1.0 / (1.0 + np.exp(self.sigmoids[:, 0] * decision + self.sigmoids[:, 1]))
        if decision.shape[0] == 1:
            return decision, np.array([1.0 - calibrated[0], calibrated[0]])
        total = float(calibrated.sum())
        size = len(calibrated)
        return decision, calibrated / total if total > 0 else np.full(size, 1.0 / size)
