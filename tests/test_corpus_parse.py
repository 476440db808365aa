"""Parse every awkward real-world mail of the shared corpus (zammad-mail, django-helpdesk).

The corpus root comes from POSTDESK_CORPUS (default <repo>/../shared/corpus); the tests skip
with a visible reason where it is absent. Every mail must give a ParsedMessage or
MessageRejected, never another exception. For zammad mails, the From address and the Subject
are also compared with the .yml expectations, which were written for Zammad's Ruby parser: the
match rate must be high, not perfect. Where From differs, our parser must have refused an
ambiguous or malformed sender (None), never have picked a different address. The body is
compared as text (Zammad keeps an HTML body as HTML: it is converted as ours is).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from postdesk.daemon.mail.htmltext import html_to_text
from postdesk.daemon.mail.parse import MessageRejected, ParsedMessage, parse_message

CORPUS = Path(
    os.environ.get(
        "POSTDESK_CORPUS", Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"
    )
)
ZAMMAD = CORPUS / "zammad-mail"
DJANGO = CORPUS / "django-helpdesk"
pytestmark = pytest.mark.skipif(not ZAMMAD.is_dir(), reason=f"mail corpus not found at {CORPUS}")


def _corpus_files() -> list[Path]:
    return sorted(ZAMMAD.glob("*.box")) + sorted(DJANGO.glob("*.eml"))


def _parse(path: Path) -> ParsedMessage | MessageRejected:
    try:
        return parse_message(path.read_bytes())
    except MessageRejected as rejected:
        return rejected


@pytest.mark.timeout(60)
def test_every_corpus_mail_parses_or_is_rejected() -> None:
    files = _corpus_files()
    assert len(files) > 100
    rejected = []
    for path in files:
        result = _parse(path)  # any other exception fails the test
        if isinstance(result, MessageRejected):
            rejected.append(f"{path.name}: {result.reason}")
        else:
            assert isinstance(result.text, str) and isinstance(result.new_text, str)
            assert result.message_id.startswith("<") and result.message_id.endswith(">")
    print(f"corpus: {len(files) - len(rejected)}/{len(files)} parsed, rejected: {rejected}")
    assert len(rejected) <= len(files) // 20


def _load_yaml(path: Path) -> dict[str, Any] | None:
    """Zammad's Ruby-tagged YAML with the safe loader plus catch-all constructors."""
    yaml = pytest.importorskip("yaml", reason="pyyaml is needed to read the zammad expectations")

    class Loader(yaml.SafeLoader):  # type: ignore[misc,name-defined]
        pass

    def any_tag(loader: Any, _suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    for prefix in ("!ruby/", "!binary", "tag:yaml.org,2002:binary"):
        Loader.add_multi_constructor(prefix, any_tag)
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)
    return data if isinstance(data, dict) else None


def _norm(value: object) -> str:
    return re.sub(r"\s+", " ", str(value or "")).strip()


@pytest.mark.timeout(120)
def test_zammad_expectations_match_closely() -> None:
    subjects = subject_hits = senders = sender_hits = 0
    wrong_sender: list[str] = []
    for box in sorted(ZAMMAD.glob("*.box")):
        expected = _load_yaml(box.with_suffix(".yml"))
        parsed = _parse(box)
        if expected is None or isinstance(parsed, MessageRejected):
            continue
        if "subject" in expected:
            subjects += 1
            subject_hits += _norm(expected["subject"]) == _norm(parsed.subject)
        if expected.get("from_email"):
            senders += 1
            want = str(expected["from_email"]).lower().removesuffix(".")  # "x@example.com."
            sender_hits += want == parsed.from_addr
            if parsed.from_addr not in (None, want):
                wrong_sender.append(f"{box.name}: {parsed.from_addr} != {want}")
    print(
        f"zammad: subject {subject_hits}/{subjects} ({subject_hits / subjects:.0%}), "
        f"from {sender_hits}/{senders} ({sender_hits / senders:.0%})"
    )
    assert subject_hits / subjects >= 0.9
    assert sender_hits / senders >= 0.85
    assert wrong_sender == []


def _expected_text(expected: dict[str, Any]) -> str:
    """The body a .yml expects, as text: Zammad's HTML converted, its empty-body marker ""."""
    body = str(expected.get("body") or "")
    if body == "no visible content":
        return ""
    return html_to_text(body) if expected.get("content_type") == "text/html" else body


def test_zammad_bodies_match_mostly() -> None:
    hits = total = 0
    for box in sorted(ZAMMAD.glob("*.box")):
        expected = _load_yaml(box.with_suffix(".yml"))
        parsed = _parse(box)
        if expected is None or "body" not in expected or isinstance(parsed, MessageRejected):
            continue
        total += 1
        hits += " ".join(_expected_text(expected).split()) == " ".join(parsed.text.split())
    print(f"zammad: body {hits}/{total} ({hits / total:.0%})")
    assert hits / total >= 0.72
