"""HTML mail bodies as readable plain text.

The document is parsed by Lexbor (through ``selectolax``), an HTML5-conformant parser: broken
structure is repaired the way browsers repair it (an unclosed ``<head>`` ends where the body
content starts, stray end tags are ignored), in linear time. The tree is then walked here,
without recursion: scripts, styles and similar non-content elements are dropped; block elements,
list items and ``<br>`` become line breaks; a link becomes "text (url)" when its text is not the
URL itself.
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

from postdesk.daemon.mail.charset import no_surrogates

__all__ = ["html_to_text"]

_SKIP = frozenset({"head", "script", "style", "title", "template", "noscript", "xml", "svg"})
_LINE_TAGS = frozenset(
    {"br", "div", "tr", "dt", "dd", "address", "section", "article", "header", "footer"}
    | {"nav", "aside", "main", "figure", "figcaption", "center", "form", "fieldset", "caption"}
)
_PARA_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dl"}
    | {"hr"}
)
_SPACES = re.compile(r"[ \t\r\n\f\v\xa0\u200b]+")
_TRAILING = re.compile(r"[ \t]+\n")
_BLANKS = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """Convert an HTML document or fragment to plain text with "\\n" line breaks."""
    tree = LexborHTMLParser(no_surrogates(html).replace("\x00", ""))
    writer = _Writer()
    root = tree.root
    if root is not None:
        writer.walk(root)
    text = _TRAILING.sub("\n", "".join(writer.out))
    return _BLANKS.sub("\n\n", text).strip()


class _Writer:
    """Collects text chunks while walking the tree; see the module docstring for the rules."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self._pre = 0
        self._links: list[tuple[str | None, int]] = []

    def walk(self, root: LexborNode) -> None:
        """Visit every node under ``root`` in document order (an explicit stack, no recursion).

        The stack holds nodes to enter and, as plain strings, the tags of elements to leave.
        """
        stack: list[LexborNode | str] = [root]
        push, pop = stack.append, stack.pop
        while stack:
            node = pop()
            if type(node) is str:
                self._end(node)
                continue
            assert isinstance(node, LexborNode)
            tag = node.tag or ""
            if tag == "-text":
                self._text(node.text_content or "")
                continue
            if tag.startswith(("-", "_", "!")) or tag in _SKIP:
                continue  # comments, doctype, and elements that are not content
            self._start(node, tag)
            push(tag)
            child = node.last_child
            while child is not None:
                push(child)
                child = child.prev

    def _start(self, node: LexborNode, tag: str) -> None:
        """Open an element: break lines or remember a link target."""
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
            self._links.append((node.attributes.get("href"), len(self.out)))

    def _end(self, tag: str) -> None:
        """Close an element: end a block or a link."""
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag in _PARA_TAGS:
            self._newline(2)
        elif tag in _LINE_TAGS or tag == "li":
            self._newline()
        elif tag == "a" and self._links:
            self._close_link(*self._links.pop())

    def _text(self, data: str) -> None:
        """Text content; whitespace collapses outside ``<pre>``."""
        if not data:
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

    def _close_link(self, href: str | None, start: int) -> None:
        """Append " (url)" after a link whose text differs from its target."""
        if not href:
            return
        href = href.strip()
        if not href or href.startswith(("#", "javascript:", "cid:")):
            return
        text = "".join(self.out[start:]).strip()
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
