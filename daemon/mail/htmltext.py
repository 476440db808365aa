"""HTML mail bodies as readable plain text, with the stdlib ``html.parser``.

Scripts, styles and similar non-content elements are dropped; block elements, list items and
``<br>`` become line breaks; a link becomes "text (url)" when its text is not the URL itself.

``html.parser`` is quadratic on some malformed input (many ``<`` that never close), so every
``<`` that does not open a complete, well-formed tag before the next ``<`` is escaped to
``&lt;`` first (``_defang``, linear). The parser then never searches far for a tag's end.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "xml", "svg"})
_LINE_TAGS = frozenset(
    {"br", "div", "tr", "dt", "dd", "address", "section", "article", "header", "footer"}
    | {"nav", "aside", "main", "figure", "figcaption", "center", "form", "fieldset", "caption"}
)
_PARA_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dl"}
    | {"hr"}
)
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base"})
_ATTR = r"""(?:\s+[^\s"'<>/=]+(?:\s*=\s*(?:"[^"<]*"|'[^'<]*'|[^\s"'<>=`]+))?)"""
_TAG = re.compile(rf"</?[A-Za-z][A-Za-z0-9:_.-]*{_ATTR}*\s*/?>")
_DECL = re.compile(r"<![A-Za-z][^<>]*>|<!\[[^<>\[\]]*\]>|<\?[^<>]*>")
_SPACES = re.compile(r"[ \t\r\n\f\v\xa0\u200b]+")
_TRAILING = re.compile(r"[ \t]+\n")
_BLANKS = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """Convert an HTML document or fragment to plain text with "\\n" line breaks."""
    parser = _TextParser()
    try:
        parser.feed(_defang(html))
        parser.close()
    except (AssertionError, ValueError, IndexError):  # old html.parser bugs on bogus input
        pass
    text = _TRAILING.sub("\n", "".join(parser.out))
    return _BLANKS.sub("\n\n", text).strip()


def _defang(html: str) -> str:
    """Escape every ``<`` that does not start a complete tag, comment or declaration."""
    out: list[str] = []
    pos = 0
    last_comment_end = html.rfind("-->")
    while True:
        i = html.find("<", pos)
        if i < 0:
            out.append(html[pos:])
            return "".join(out)
        out.append(html[pos:i])
        end = _token_end(html, i, last_comment_end)
        if end < 0:
            out.append("&lt;")
            pos = i + 1
        else:
            out.append(html[i:end])
            pos = end


def _token_end(html: str, i: int, last_comment_end: int) -> int:
    """End of the well-formed token starting at ``html[i] == "<"``, or -1."""
    if html.startswith("<!--", i):
        if i + 4 > last_comment_end:
            return -1
        return html.find("-->", i + 4) + 3
    match = _TAG.match(html, i) or _DECL.match(html, i)
    return match.end() if match else -1


class _TextParser(HTMLParser):
    """Collects text chunks; see the module docstring for the rules."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip: list[str] = []
        self._pre = 0
        self._href: str | None = None
        self._link_start = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open an element: skip, break lines or remember a link target."""
        if tag in _SKIP:
            if tag not in _VOID:
                self._skip.append(tag)
            return
        if self._skip:
            return
        if tag == "pre":
            self._pre += 1
        if tag == "li":
            self._newline()
            self.out.append("- ")
        elif tag == "br":
            self.out.append("\n")
        elif tag in _PARA_TAGS:
            self._newline(2)
        elif tag in _LINE_TAGS:
            self._newline()
        elif tag in ("td", "th") and self.out and not self.out[-1].endswith(("\n", " ")):
            self.out.append(" ")
        elif tag == "a":
            self._href = dict(attrs).get("href")
            self._link_start = len(self.out)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """A self-closing tag such as ``<br/>``: no content follows."""
        if tag in _SKIP:
            return
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        """Close an element: end a skipped section, a block or a link."""
        if self._skip:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag in _PARA_TAGS:
            self._newline(2)
        elif tag in _LINE_TAGS or tag == "li":
            self._newline()
        elif tag == "a":
            self._close_link()

    def handle_data(self, data: str) -> None:
        """Text content; whitespace collapses outside ``<pre>``."""
        if self._skip or not data:
            return
        if not self._pre:
            data = _SPACES.sub(" ", data)
            if not self.out or self.out[-1].endswith(("\n", " ")):
                data = data.lstrip(" ")
            if not data:
                return
        self.out.append(data)

    def _newline(self, count: int = 1) -> None:
        """Make sure the output ends with at least ``count`` line breaks (none at the start)."""
        tail = "".join(self.out[-3:])
        if not tail:
            return
        have = len(tail) - len(tail.rstrip("\n"))
        if have < count:
            self.out.append("\n" * (count - have))

    def _close_link(self) -> None:
        """Append " (url)" after a link whose text differs from its target."""
        href, self._href = self._href, None
        if not href:
            return
        href = href.strip()
        if not href or href.startswith(("#", "javascript:", "cid:")):
            return
        text = "".join(self.out[self._link_start :]).strip()
        bare = href[7:] if href.lower().startswith("mailto:") else href
        if text and _same_target(text, bare):
            return
        self.out.append(f" ({bare})" if text else bare)


def _same_target(text: str, href: str) -> bool:
    """True when the link text already shows its target (ignoring scheme and trailing /)."""

    def norm(value: str) -> str:
        value = value.strip().lower().rstrip("/")
        for prefix in ("https://", "http://", "mailto:"):
            if value.startswith(prefix):
                return value[len(prefix) :]
        return value

    return norm(text) == norm(href)
