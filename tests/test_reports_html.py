"""The HTML report in a real headless Chromium: renders without console messages, every chart
is a non-empty inline SVG, nothing is fetched, and it fits a phone screen and a printed page."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.chromium import console_messages, run_chromium
from tests.reportdata import AGENTS_TOML, build_fixture
from tests.support import write_config

CHARTS = ("chart-volume", "chart-speed", "chart-sla", "chart-csat", "chart-backlog")


class Charts(HTMLParser):
    """Collects, per ``<svg id=...>``, the heights of its bars; and every src/href seen."""

    def __init__(self) -> None:
        """Start with nothing seen."""
        super().__init__()
        self.bars: dict[str, list[float]] = {}
        self.links: list[str] = []
        self._svg: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Note chart starts, bar heights and any attribute that could fetch something."""
        values = dict(attrs)
        if tag == "svg":
            self._svg = values.get("id") or ""
            self.bars.setdefault(self._svg, [])
        elif tag == "rect" and self._svg and "bar" in (values.get("class") or ""):
            self.bars[self._svg].append(float(values.get("height") or 0))
        self.links += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href")]

    def handle_endtag(self, tag: str) -> None:
        """Leave the chart."""
        if tag == "svg":
            self._svg = None


@pytest.fixture
def report_file(tmp_path: Path, sqlite_url: str) -> Path:
    """The fixture's HTML report, written by ``postdesk report --html``."""
    build_fixture(sqlite_url)
    config = write_config(tmp_path, sqlite_url, extra=AGENTS_TOML)
    target = tmp_path / "report.html"
    subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "report",
         "--from", "2026-10-19", "--to", "2026-11-01", "--by", "day", "--html", str(target)],
        check=True, capture_output=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    return target


def test_report_renders_in_chromium_with_every_chart(report_file: Path, tmp_path: Path) -> None:
    url = report_file.as_uri()
    dumped = run_chromium(tmp_path, url, "--dump-dom")
    assert console_messages(dumped.stderr) == []
    dom = Charts()
    dom.feed(dumped.stdout)
    assert set(CHARTS) <= set(dom.bars), f"charts in the page: {sorted(dom.bars)}"
    for chart in CHARTS:
        assert any(h > 0 for h in dom.bars[chart]), f"{chart} draws no bar"
    assert dom.links == [], "a self-contained page links to nothing"
    assert "<table>" in dumped.stdout and "Backlog at the end of the range: 4 open" in dumped.stdout

    for name, size in (("phone", "390,2400"), ("desktop", "1280,2000")):
        shot = tmp_path / f"report-{name}.png"
        taken = run_chromium(tmp_path, url, f"--window-size={size}", f"--screenshot={shot}")
        assert console_messages(taken.stderr) == []
        assert shot.stat().st_size > 20_000, f"{name} screenshot looks empty"
    pdf = tmp_path / "report.pdf"
    printed = run_chromium(tmp_path, url, "--no-pdf-header-footer", f"--print-to-pdf={pdf}")
    assert console_messages(printed.stderr) == []
    assert pdf.read_bytes().startswith(b"%PDF")


def test_a_fetch_would_be_caught(tmp_path: Path) -> None:
    """The report's Content-Security-Policy turns any fetch into a console message, which the
    test above would see: the check can fail."""
    page = tmp_path / "leaky.html"
    head = Path(__file__).resolve().parents[1] / "templates" / "reports" / "report.html.j2"
    csp = next(line for line in head.read_text().splitlines() if "Content-Security-Policy" in line)
    page.write_text(
        f'<html><head>{csp}</head><body><img src="http://127.0.0.1:9/x.png"></body></html>'
    )
    result = run_chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert any("Content Security Policy" in line for line in console_messages(result.stderr))
