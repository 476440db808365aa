"""MIME charset labels to Python codecs, and decoding bytes to text with a fallback chain.

Mail declares charsets badly (unknown labels, wrong labels, Windows code pages under ISO names)
or not at all, so decoding here never fails: the declared charset, else UTF-8, else cp1252 with
replacement characters, each fallback noted as a defect. Lone surrogates become U+FFFD.
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
}
_REFUSED_CODECS = frozenset(
    {"idna", "punycode", "raw_unicode_escape", "unicode_escape", "undefined", "mbcs", "oem"}
)


def decode_bytes(data: bytes, charset: str | None, defects: list[str], where: str) -> str:
    """Decode with the declared charset, else UTF-8, else cp1252 with replacement."""
    label = (charset or "").strip().strip("\"'").lower()
    codec = _codec(label) if label else None
    if label and codec is None:
        defects.append(f"{where}: unknown charset {label[:40]!r}")
    for name in (codec, "utf-8"):
        if name is None:
            continue
        try:
            text = data.decode(name)
        except Exception:  # UnicodeDecodeError, and odd codecs raising other errors
            continue
        if name != codec and codec is not None:
            defects.append(f"{where}: not valid {label[:40]!r}, decoded as UTF-8")
        return no_surrogates(text)
    if codec is not None or label:
        defects.append(f"{where}: decoded as cp1252 with replacement characters")
    return data.decode("cp1252", "replace")


def decode_header_bytes(data: bytes, hints: tuple[str, ...], defects: list[str], name: str) -> str:
    """Decode raw 8-bit header bytes: UTF-8, then each charset in ``hints``, then cp1252.

    Multi-byte charsets are tried before single-byte ones, which accept anything.
    """
    candidates = [codec for codec in (_codec(hint) for hint in hints) if codec]
    for codec in ["utf-8", *sorted(candidates, key=_single_byte)]:
        try:
            return no_surrogates(data.decode(codec))
        except Exception:  # UnicodeDecodeError, and odd codecs raising other errors
            continue
    return decode_bytes(data, None, defects, f"8-bit header {name}")


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
    """Replace lone surrogates (UTF-7 can produce them; databases refuse them) with U+FFFD."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


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
