"""Every hook is documented in docs/plugins.md and exercised by a plugin test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from postdesk.plugins import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("postdesk_"))


def test_every_hookspec_has_a_full_docstring() -> None:
    for name in HOOKS:
        spec = getattr(hookspecs, name)
        doc = inspect.getdoc(spec) or ""
        for parameter in inspect.signature(spec).parameters:
            assert f":param {parameter}:" in doc, f"{name}: :param {parameter}: missing"
        assert ":returns:" in doc and "Called" in doc, f"{name}: say what it returns and when"


def test_every_hookspec_is_documented_with_its_signature() -> None:
    text = (ROOT / "docs" / "plugins.md").read_text()
    for name in HOOKS:
        arguments = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"#### `{name}({arguments})" in text, f"{name} is not documented in docs/plugins.md"


def test_every_hookspec_has_a_test() -> None:
    tests = "".join(p.read_text() for p in sorted((ROOT / "tests").glob("test_plugins_*.py")))
    tested = set(re.findall(r"postdesk_[a-z_]+", tests.replace(Path(__file__).read_text(), "")))
    missing = [name for name in HOOKS if name not in tested]
    assert not missing, f"hooks without a test: {missing}"
