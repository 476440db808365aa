"""MIME charset labels to Python codecs, and decoding bytes to text.

Mail declares charsets badly (unknown labels, wrong labels, Windows code pages under ISO names)
or not at all, so decoding here never fails. One function decodes bodies and encoded words:

* a declared charset that decodes the bytes is used as it is;
* a declared charset that fails on a few bytes is still used, and only those bytes become
  U+FFFD (one bad byte must not turn a whole header into mojibake); ISO-2022-JP that Python's
  codec refuses is first read as Windows writes it, with the NEC and IBM characters ("①",
  "㈱") of Shift_JIS;
* a declared charset is *plainly wrong* when it fails on more than a third of the non-ASCII
  characters, when it fails at all on bytes that are valid UTF-8 and not plain ASCII (UTF-8
  labelled GB2312; ISO-2022-JP's escapes are ASCII), or
  when it is a single-byte charset and the bytes are valid UTF-8 with non-ASCII characters
  (UTF-8 labelled as Latin-1); then, as when nothing or something unknown is
  declared: UTF-8 if the bytes are valid UTF-8, else cp1252 when it reads plausibly (by
  ``charset-normalizer``'s mess ratio), else the charset ``charset-normalizer`` detects (the
  charsets the message declares elsewhere win a tie), else cp1252 with replacement characters.

Every fallback is noted as a defect. Lone surrogates become U+FFFD.
"""

from __future__ import annotations

import codecs
import functools
import re

__all__ = ["decode_bytes", "decode_header_bytes", "no_surrogates"]

_SURROGATE = re.compile("[\ud800-\udfff]")
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso8859-1": "cp1252",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "unicode-1-1-utf-7": "utf-7",
    "chinesebig5": "big5",  # Outlook Express
    "x-x-big5": "big5",
}
_MAX_DETECT = 200_000  # bytes given to the detector
_MAX_MESS = 0.5  # charset-normalizer's "mess ratio" above which cp1252 text reads as mojibake
_TIE = 0.02  # charsets this close in "chaos" to the best one are as plausible
_REFUSED_CODECS = frozenset(
    {"idna", "punycode", "raw_unicode_escape", "unicode_escape", "undefined", "mbcs", "oem"}
)


def decode_bytes(
    data: bytes, charset: str | None, defects: list[str], where: str, hints: tuple[str, ...] = ()
) -> str:
    """Decode with the declared charset, or detect one (see the module docstring)."""
    label = (charset or "").strip().strip("\"'").lower()
    codec = _codec(label) if label else None
    if label and codec is None:
        defects.append(f"{where}: unknown charset {label[:40]!r}")
    if codec is not None:
        text = _declared(data, codec, label, defects, where)
        if text is not None:
            return no_surrogates(text)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if codec is not None:
            defects.append(f"{where}: not {label[:40]!r} but UTF-8")
        return no_surrogates(text)
    detected = _detect(data, hints)
    if detected is not None:
        if label:
            defects.append(f"{where}: not {label[:40]!r}; detected {detected}")
        return no_surrogates(data.decode(detected, "replace"))
    if label:
        defects.append(f"{where}: decoded as cp1252 with replacement characters")
    return data.decode("cp1252", "replace")


def _declared(data: bytes, codec: str, label: str, defects: list[str], where: str) -> str | None:
    """The bytes in the declared codec, bad bytes replaced; None when it is plainly wrong."""
    try:
        text = data.decode(codec)
    except Exception:  # UnicodeDecodeError, and odd codecs raising other errors
        if codec.startswith("iso2022_jp"):
            windows = _iso2022jp_windows(data)
            if windows is not None:
                return windows
    else:
        if not _single_byte(codec) or text.isascii() or not _valid_utf8(data):
            return text
        return None  # UTF-8 labelled as a single-byte charset
    if not data.isascii() and _valid_utf8(data):  # (7-bit ISO-2022-JP is ASCII: no UTF-8)
        return None  # UTF-8 labelled as a charset it does not decode in (GB2312, Shift_JIS...)
    try:
        text = data.decode(codec, "replace")
    except Exception:  # a codec that cannot even replace
        return None
    bad = text.count("\ufffd")
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    if bad * 3 > non_ascii:
        return None
    defects.append(f"{where}: {bad} invalid {label[:40]!r} sequence(s) replaced")
    return text


# ISO-2022-JP's escape sequences: the character set each one switches to.
_JIS_ESCAPES = {
    b"\x1b(B": "ascii",
    b"\x1b(J": "ascii",  # JIS X 0201 Roman: ASCII but for the yen sign and overline
    b"\x1b(I": "kana",  # JIS X 0201 half-width katakana
    b"\x1b$@": "jis",  # JIS X 0208-1978
    b"\x1b$B": "jis",  # JIS X 0208-1983
    b"\x1b&@": None,  # announces JIS X 0208-1990 before "ESC $ B": no switch of its own
}


def _iso2022jp_windows(data: bytes) -> str | None:
    """ISO-2022-JP as Windows and Outlook write it (Microsoft's CP50220): with the NEC and IBM
    characters of Shift_JIS (cp932) that JIS X 0208 lacks, such as "①", "㈱" and "Ⅱ", which
    Python's iso2022_jp codecs refuse. Each JIS X 0208 pair is moved to its Shift_JIS bytes and
    the whole is read as cp932. None when the bytes hold anything else."""
    out = bytearray()
    mode, index, end = "ascii", 0, len(data)
    while index < end:
        byte = data[index]
        if byte == 0x1B:
            escape = data[index : index + 3]
            if escape not in _JIS_ESCAPES:
                return None
            mode = _JIS_ESCAPES[escape] or mode
            index += 3
        elif byte in (0x0A, 0x0D) or mode == "ascii":
            if byte > 0x7F:
                return None
            out.append(byte)
            index += 1
        elif mode == "kana":
            if not 0x21 <= byte <= 0x5F:
                return None
            out.append(byte + 0x80)
            index += 1
        else:
            if index + 1 >= end or not (0x21 <= byte <= 0x7E and 0x21 <= data[index + 1] <= 0x7E):
                return None
            out += _shift_jis(byte, data[index + 1])
            index += 2
    try:
        return out.decode("cp932").translate(_JIS_AS_PYTHON)
    except UnicodeDecodeError:
        return None


# The six JIS X 0208 characters cp932 maps elsewhere than Python's iso2022_jp (the wave
# dash, the minus sign...): read as that codec reads them, so one sender's mail reads alike
# with or without an NEC character in it.
_JIS_AS_PYTHON = str.maketrans(
    {"\uff5e": "\u301c", "\u2225": "\u2016", "\uff0d": "\u2212", "\uffe0": "\u00a2"}
    | {"\uffe1": "\u00a3", "\uffe2": "\u00ac"}
)


def _shift_jis(first: int, second: int) -> bytes:
    """The Shift_JIS bytes of the JIS X 0208 row/cell pair ``first``, ``second``."""
    lead = ((first - 0x21) >> 1) + 0x81
    lead += 0x40 if lead > 0x9F else 0
    # an odd row's cells go to 0x40-0x9E (skipping 0x7F), an even row's to 0x9F-0xFC
    trail = second + 0x1F + (second >= 0x60) if first % 2 else second + 0x7E
    return bytes((lead, trail))


def _valid_utf8(data: bytes) -> bool:
    """True when ``data`` decodes as UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _detect(data: bytes, hints: tuple[str, ...]) -> str | None:
    """cp1252 when it reads plausibly, else what charset-normalizer finds most plausible.

    Among equally plausible detections, the charsets in ``hints`` win. charset-normalizer is
    imported here, on the first detection: most mail declares a charset that decodes, and the
    import costs ~5-8 ms of CPU in every process that parses mail.
    """
    from charset_normalizer import from_bytes
    from charset_normalizer.md import mess_ratio

    sample = data[:_MAX_DETECT]
    if mess_ratio(sample.decode("cp1252", "replace"), _MAX_MESS) < _MAX_MESS:
        return "cp1252"
    results = list(from_bytes(sample))
    if not results:
        return None
    best = results[0]
    tied = {_codec(str(r.encoding)) for r in results if r.chaos <= best.chaos + _TIE}
    for preferred in (_codec(hint) for hint in hints):
        if preferred in tied:
            return preferred
    return _codec(str(best.encoding))


def decode_header_bytes(data: bytes, hints: tuple[str, ...], defects: list[str], name: str) -> str:
    """Decode raw 8-bit header bytes: UTF-8, then each charset in ``hints``, then detection.

    Multi-byte charsets are tried before single-byte ones, which accept anything.
    """
    candidates = [codec for codec in (_codec(hint) for hint in hints) if codec]
    for codec in ["utf-8", *sorted(candidates, key=_single_byte)]:
        try:
            return no_surrogates(data.decode(codec))
        except Exception:  # UnicodeDecodeError, and odd codecs raising other errors
            continue
    return decode_bytes(data, None, defects, f"8-bit header {name}", hints)


@functools.lru_cache(maxsize=64)
def _single_byte(codec: str) -> bool:
    """True for codecs that decode (nearly) every single high byte, like latin-1."""
    decodable = 0
    for byte in range(128, 256):
        try:
            bytes([byte]).decode(codec)
        except Exception:
            continue
        decodable += 1
    return decodable > 100


def no_surrogates(text: str) -> str:
    """Replace lone surrogates (UTF-7 can produce them; databases refuse them) with U+FFFD.

    Text without any is told apart at C speed (ASCII in O(1), else a strict UTF-8 encode,
    which fails exactly on surrogates): the regex search costs ~10 us per 4 KB body.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


@functools.lru_cache(maxsize=256)
def _codec(label: str) -> str | None:
    """The Python codec for a MIME charset label, or None when unknown or refused."""
    label = _CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    if info.name in _REFUSED_CODECS or not getattr(info, "_is_text_encoding", True):
        return None
    return info.name
