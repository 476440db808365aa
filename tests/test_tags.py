"""Subject tags: made one way, found in every way customers' mail clients mangle them."""

from __future__ import annotations

import pytest

from postdesk.daemon.store.tags import find_ticket_numbers, format_tag


def test_format() -> None:
    assert format_tag("Example", 42) == "[Example #42]"


@pytest.mark.parametrize(
    "subject",
    [
        "[Example #42]",
        "Re: [example #42] hi",
        "AW: SV: Antw: Fwd: [ EXAMPLE  # 42 ]",
        "x [Example#42] y",
    ],
)
def test_found_case_insensitively_with_any_spacing(subject: str) -> None:
    assert find_ticket_numbers("Example", subject) == [42]


@pytest.mark.parametrize("subject", ["[Other #42]", "Example #42", "[Example 42]", "[Example #]"])
def test_not_found(subject: str) -> None:
    assert find_ticket_numbers("Example", subject) == []
