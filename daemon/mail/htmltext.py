"""HTML mail bodies as readable plain text.

The document is parsed by Lexbor (through ``selectolax``), an HTML5-conformant parser: broken
structure is repaired the way browsers repair it (an unclosed ``<head>`` ends where the body
content starts, stray end tags are ignored), in linear time. The tree is then walked here,
without recursion: scripts, styles and similar non-content elements are dropped; block elements,
list items and ``<br>`` become line breaks; a link becomes "text (url)" when its text is not the
URL itself. A ``<blockquote>`` that quotes the mail answered (see ``_quoting``) is quoted
history: its lines start with "> ", one per level, as a plain-text client quotes them, so that
the reply extraction sees the quote. Other blockquotes are the writer's own text.
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
# Where a quoting blockquote opens and closes in the collected text (private-use characters,
# removed from the document's own text first); ``_quote_lines`` turns them into "> " prefixes.
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARKS = re.compile(f"([{_OPEN}{_CLOSE}])")
_MAX_LEVELS = 20  # quote marks written at most per line (hostile nesting stays linear)


def html_to_text(html: str) -> str:
    """Convert an HTML document or fragment to plain text with "\\n" line breaks."""
    tree = LexborHTMLParser(no_surrogates(html).replace("\x00", ""))
    writer = _Writer()
    root = tree.root
    if root is not None:
        writer.walk(root)
    text = _TRAILING.sub("\n", "".join(writer.out))
    if writer.quoted:
        text = _quote_lines(text)
    return _BLANKS.sub("\n\n", text).strip()


def _quote_lines(text: str) -> str:
    """Prefix each line inside quoting blockquotes with "> " per level (see ``_OPEN``). A blank
    line inside a quote stays quoted (">") only between two lines of that quote."""
    depth = 0
    lines: list[tuple[int, str]] = []  # (quote level, text)
    for line in text.split("\n"):
        if _OPEN not in line and _CLOSE not in line:
            lines.append((depth, line))
            continue
        kept, level = [], None  # the text of the line, and the level at its first character
        for part in _MARKS.split(line):
            if part == _OPEN:
                depth += 1
            elif part == _CLOSE:
                depth = max(0, depth - 1)
            elif part:
                if level is None and part.strip():
                    level = depth
                kept.append(part)
        lines.append((depth if level is None else level, "".join(kept)))
    after = [0] * (len(lines) + 1)  # the level of the next line with text
    for index in range(len(lines) - 1, -1, -1):
        level, line = lines[index]
        after[index] = level if line.strip() else after[index + 1]
    out, before = [], 0  # before: the level of the last line with text
    for index, (level, line) in enumerate(lines):
        if line.strip():
            out.append("> " * min(level, _MAX_LEVELS) + line)
            before = level
        else:
            out.append(("> " * min(level, before, after[index + 1], _MAX_LEVELS)).rstrip())
    return "\n".join(out)


def _quoting(node: LexborNode) -> bool:
    """True for a blockquote that quotes the mail answered: ``type="cite"`` (Apple Mail,
    Thunderbird, Roundcube, Proton, Fastmail), a ``*_quote`` class (Proton, Yahoo), or Gmail's
    ``gmail_quote`` inside the ``gmail_quote`` block that carries its attribution. Gmail's
    "quote" button makes the same blockquote straight in the text, and its "indent" button and
    other editors a plain blockquote: those are the writer's own text."""
    attributes = node.attributes
    if (attributes.get("type") or "").strip().lower() == "cite":
        return True
    names = (attributes.get("class") or "").lower().split()
    if "gmail_quote" in names:
        parent = node.parent
        return parent is not None and "gmail_quote" in (parent.attributes.get("class") or "")
    return any(name.endswith(("_quote", "_quoted")) for name in names)


class _Writer:
    """Collects text chunks while walking the tree; see the module docstring for the rules."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self._pre = 0
        self._links: list[tuple[str | None, int]] = []
        self._quotes: list[bool] = []  # for each open blockquote: does it quote history?
        self.quoted = False  # some blockquote quoted history: lines get "> " (_quote_lines)

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
            if tag == "blockquote":
                self._quotes.append(_quoting(node))
                if self._quotes[-1]:
                    self.quoted = True
                    self.out.append(_OPEN)
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
        if tag == "blockquote" and self._quotes and self._quotes.pop():
            self.out.append(_CLOSE)
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
        if _OPEN in data or _CLOSE in data:  # the document's own: not taken for quote marks
            data = data.replace(_OPEN, "").replace(_CLOSE, "")
        if not self._pre:
            data = _SPACES.sub(" ", data)
            if not self.out or self.out[-1].endswith(("\n", " ", _OPEN, _CLOSE)):
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
