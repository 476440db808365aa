"""Order numbers in a message: the default pattern, in many languages, and a fast search.

:class:`NumberFinder` finds the numbers a pattern's first group (or whole match) gives, in
the first :data:`SCANNED_CHARS` of a text. For :data:`DEFAULT_PATTERN` on ASCII text it
searches lower-cased twins of the pattern that start with a literal; for another ASCII
pattern on ASCII text, its ASCII twin; each finds exactly what the pattern itself finds
(property tests hold them to it), in a fraction of the time; a long ASCII text only up to
where a number at its last digit could end (a signature or a quoted tail without digits is not
searched).
"""

# The order words are words of many scripts; letters that look Latin are meant as they are.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import compress

# The words for an order (English, German, French, Spanish, Italian, Portuguese, Dutch,
# Swedish, Danish, Norwegian, Finnish, Polish, Czech, Romanian, Turkish, Greek, Russian,
# Ukrainian, Indonesian, Vietnamese, Japanese, Chinese, Korean) in the forms a number follows,
# each at a word's start ("reorder", "border" are other words; the CJK words, written without
# spaces, anywhere), then a number's marker ("no.", "Nr.", "n°", "№", "#", "ID", "number",
# "numéro", "номер", "番号", "号", "번호", ...), spaced or glued on ("Bestellnummer",
# "Bestell-Nr.", "注文番号"), with an "is" after it ("order number is", "Bestellnummer ist"),
# then the number: a whole run of three to 83 letters, digits or hyphens, one a digit. A
# longer run is no order number, and the bound keeps a failing try short: unbounded, it went
# back through the whole run from every word before it (18 kB of "order-order-...-1" took
# 1.5 s of the plugins' loop; now 11 ms). Words said before them ("numéro de commande",
# "номер заказа") need no spelling: the order word is the one the number follows. The
# look-ahead at the words' first letters spares trying every word at the start of every other
# word: a third of the time in non-ASCII text (where this pattern itself is searched, at every
# position). Each part is a literal, a choice of literals, a possessive \s run (see
# _DEFAULT_LOWERED) or a bounded run, so a failed try never backtracks far.
_IS = ("is", "ist", "est", "es", "er", "on", "jest", "je", "är", "è", "é", "là")
DEFAULT_PATTERN = (
    r"(?i)(?=[abceopstzзđπご注订訂주])(?:\b(?:order|ordre|ordine|orden|pedido|pesanan|encomenda"
    r"|commande|comand[aă]|comenzii|bestel(?:lung|ling|l)?|bestilling(?:en|s)?|auftrags?"
    r"|beställning(?:en|s)?|tilaus|tilauksen|zamówieni[eau]|objednáv(?:ka|ky|ku|ce)"
    r"|sipariş(?:iniz|im)?|παραγγελί(?:ας|ες|α)|заказ[аеу]?|замовлен(?:ня|ні)|đơn\s++hàng)"
    r"|ご?注文|订单|訂單|주문)"
    r"\s*+(?:-?(?:number|nummer|numéro|número|numero|numer|numarası|numaranız|номер"
    r"|číslo|no\.?|nr\.?|n\.?[°º]|n\.|č\.|№|id|#|số|番号|编号|編號|號碼|号码|号|번호)"
    rf"(?:\s++(?:{'|'.join(_IS)})(?!\w))?)?"
    r"\s*+[:\uff1a]?\s*+#?\s*+([A-Z0-9-]{0,40}\d[A-Z0-9-]{2,40}+)(?![A-Z0-9-])"
)
# DEFAULT_PATTERN spelt for lower-cased ASCII text: one pattern per literal that its order
# words in ASCII letters start with ("ord" for order, ordre, ordine and orden). The other words
# hold a letter ASCII text lacks; one spelt without it ("zamowienie") is not looked for, as each
# word looked for costs a scan of every ASCII text with a digit. The marker "numarası" does
# match "numarasi" (a case-insensitive ı matches i and I). A pattern that starts with a
# literal is searched by a fast scan for it instead of a try at every position (as the
# default is: it ignores case, starts with \b and with a choice of words; the look-behind is
# that \b). No two of them match at one place (their literals differ), so in ASCII text the
# matches of DEFAULT_PATTERN are theirs in text.lower(), at the same places, taken in turn
# (_default_matches). Their \s runs are possessive (``*+``, Python 3.11): nothing after one
# matches a space, so giving spaces back never makes a match (a later run would take them,
# the rest unmoved), and a failing "order has ..." costs no backtracking through the four
# runs. They stay Unicode patterns: their \s, like the default's, also matches the
# separators \x1c-\x1f. A property test holds them to DEFAULT_PATTERN.
_ASCII_IS = "|".join(word for word in _IS if word.isascii())
_LOWERED_TAIL = (
    r"\s*+(?:-?(?:number|nummer|numero|numer|numarasi|numaraniz|no\.?|nr\.?|n\.|id|#)"
    rf"(?:\s++(?:{_ASCII_IS})(?!\w))?)?"
    r"\s*+:?\s*+#?\s*+([a-z0-9-]{0,40}\d[a-z0-9-]{2,40}+)(?![a-z0-9-])"
)
_DEFAULT_LOWERED = {
    word: re.compile(f"{word}(?<![a-z0-9_]{word}){ending}{_LOWERED_TAIL}")
    for word, ending in (
        ("ord", "(?:er|re|ine|en)"),
        ("pedido", ""),
        ("pesanan", ""),
        ("encomenda", ""),
        ("commande", ""),
        ("comanda", ""),
        ("comenzii", ""),
        ("bestel", "(?:lung|ling|l)?"),
        ("bestilling", "(?:en|s)?"),
        ("auftrag", "s?"),
        ("tilaus", ""),
        ("tilauksen", ""),
    )
}
# A number holds a digit: a text without one mentions no order number. Looked for first, by
# a scan far cheaper than the words' (most messages hold no digit).
_DIGIT = re.compile(r"\d")
_ASCII_DIGITS = b"0123456789"
_DIGIT_CHARS = "0123456789"
_NUMBER_TAIL = 40  # a number's characters after its digit at most: {2,40} in the patterns
# Text longer than this is searched only up to the end of a number at its last digit: finding
# that digit costs more than the search saves in shorter text.
_LONG_TEXT = 1024
# Of a message's subject and new text, the part searched for order numbers: the numbers a
# customer asks about come early, and a pattern of one's own may cost more per character.
SCANNED_CHARS = 64 * 1024
# The ASCII characters a Unicode \s matches and an ASCII-only one does not.
_UNICODE_ONLY_SPACES = ("\x1c", "\x1d", "\x1e", "\x1f")


class NumberFinder:
    """Finds the order numbers of one pattern."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        """Find what ``pattern``'s first group (or whole match) gives."""
        self.pattern = pattern
        self._group = 1 if pattern.groups else 0
        self._ascii = _ascii_twin(pattern)
        self._default = pattern.pattern == DEFAULT_PATTERN

    def find(self, text: str, limit: int) -> list[str]:
        """Distinct numbers in ``text``, in order of appearance, at most ``limit``."""
        found: list[str] = []
        text = text[:SCANNED_CHARS]
        if self._default:
            matches = _default_matches(text, self.pattern)
        elif self._ascii is not None and text.isascii() and not _has_unicode_only_spaces(text):
            matches = self._ascii.finditer(text)
        else:
            matches = self.pattern.finditer(text)
        for match in matches:
            number = text[match.start(self._group) : match.end(self._group)]
            if number and number not in found:
                found.append(number)
                if len(found) == limit:
                    break
        return found


def _default_matches(text: str, default: re.Pattern[str]) -> Iterator[re.Match[str]]:
    """DEFAULT_PATTERN's (``default``'s) matches in ``text``; none without a digit. In ASCII
    text those of the lower-cased twins (:data:`_DEFAULT_LOWERED`) of the words it holds:
    each twin's next match, the first of them taken and those it overlaps searched again
    after it, as a search with the one pattern goes on."""
    if not text.isascii():
        if _DIGIT.search(text):
            yield from default.finditer(text)
        return
    if len(text.encode().translate(None, _ASCII_DIGITS)) == len(text):  # \d, in ASCII
        return
    if len(text) > _LONG_TEXT:
        # A number holds a digit and runs at most 40 characters past it, then the look-ahead
        # reads one more: the text beyond that (a long message's tail) cannot change a match.
        text = text[: max(map(text.rfind, _DIGIT_CHARS)) + _NUMBER_TAIL + 2]
    # Only in ASCII does lower() keep each character in its place ("İ".lower() is two) and
    # match as ignoring case does (which also takes "ſ" for s).
    lowered = text.lower()
    words = list(compress(_DEFAULT_LOWERED.values(), map(lowered.__contains__, _DEFAULT_LOWERED)))
    if len(words) == 1:  # as most messages: one language, one word for an order
        yield from words[0].finditer(lowered)
        return
    matches = [match for match in (pattern.search(lowered) for pattern in words) if match]
    while matches:
        first = min(matches, key=lambda match: match.start())
        yield first
        end = first.end()
        nexts = [m if m.start() >= end else m.re.search(lowered, end) for m in matches]
        matches = [match for match in nexts if match]


def _ascii_twin(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """``pattern`` compiled for ASCII text alone, when it is ASCII itself: on ASCII text
    without the separators ``\\x1c``-``\\x1f`` (which only a Unicode ``\\s`` matches) it finds
    exactly what ``pattern`` finds, in about half the time when it ignores case (as the default
    does). None when it cannot be (a non-ASCII pattern, an explicit ``(?u)``)."""
    if not pattern.pattern.isascii():
        return None
    try:
        return re.compile(pattern.pattern, (pattern.flags & ~re.UNICODE) | re.ASCII)
    except (re.error, ValueError):
        return None


def _has_unicode_only_spaces(text: str) -> bool:
    """Whether ``text`` holds a character that ``\\s`` matches only in a Unicode pattern, where
    an ASCII twin (:func:`_ascii_twin`) would find something else."""
    return any(space in text for space in _UNICODE_ONLY_SPACES)
