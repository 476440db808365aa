"""HTML mail bodies as readable plain text (stdlib html.parser; scripts and styles dropped)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

BLOCKS = {
    "p",
    "div",
    "tr",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "ul",
    "ol",
    "pre",
}
SKIPPED = {"script", "style", "head", "title"}


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skipping = 0
        self.link: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED:
            self.skipping += 1
        elif tag == "br":
            self.chunks.append("\n")
        elif tag == "li":
            self.chunks.append("\n- ")
        elif tag in BLOCKS:
            self.chunks.append("\n\n")
        elif tag == "a":
            self.link = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in BLOCKS:
            self.chunks.append("\n\n")
        elif tag == "a":
            self.link = None

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        text = re.sub(r"[ \t\r\n]+", " ", data)
        if (
            self.link
            and self.link.startswith(("http:", "https:", "mailto:"))
            and self.link not in text
        ):
            text = f"{text} ({self.link})"
        self.chunks.append(text)


def html_to_text(html: str) -> str:
    """Plain text of an HTML document: block structure kept as line breaks."""
    collector = _TextCollector()
    try:
        collector.feed(html)
        collector.close()
    except Exception:  # html.parser copes with almost anything; keep what was read
        pass
    lines = [line.strip() for line in "".join(collector.chunks).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
