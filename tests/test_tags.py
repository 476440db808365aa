"""Subject tags: made one way, found in every way customers' mail clients mangle them."""

from __future__ import annotations

import pytest

from postdesk.daemon.store.tags import bare_subject, find_ticket_numbers, format_tag


def test_format() -> None:
    assert format_tag("Example", 42) == "[Example #42]"


@pytest.mark.parametrize(
    "subject",
    [
        "[Example #42]",
        "Re: [example #42] hi",
        "AW: SV: Antw: Fwd: [ EXAMPLE  # 42 ]",
        "x [Example#42] y",
        "回复：［Example ＃４２］打印机",  # noqa: RUF001 - full-width, as a Chinese input method types
    ],
)
def test_found_case_insensitively_with_any_spacing(subject: str) -> None:
    assert find_ticket_numbers("Example", subject) == [42]


@pytest.mark.parametrize("subject", ["[Other #42]", "Example #42", "[Example 42]", "[Example #]"])
def test_not_found(subject: str) -> None:
    assert find_ticket_numbers("Example", subject) == []


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Fwd: Printer",
        "AW: WG: [Example #42] Printer",
        "I: R: Printer",  # Outlook in Italian
        "RV: RE: Printer",  # Spanish
        "YNT: Printer",  # Turkish
        "Отв: Printer",  # Russian
        "ΣΧΕΤ: Printer",  # Greek
        "RE[2]: Printer",
    ],
)
def test_bare_subject_drops_tags_and_stacked_prefixes(subject: str) -> None:
    assert bare_subject("Example", subject) == "Printer"


def test_bare_subject_keeps_a_colon_that_is_no_prefix() -> None:
    assert bare_subject("Example", "Invoice: wrong amount") == "Invoice: wrong amount"
