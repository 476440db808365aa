"""Authentication-Results parsing (RFC 8601) and alignment with the From domain."""

from __future__ import annotations

import pytest

from postdesk.daemon.agents.authresults import aligned, first_trusted, parse, vouches_for

TRUSTED = ["mx.example.com"]


def test_parses_methods_properties_comments_and_quotes() -> None:
    header = (
        "mx.example.com 1; dkim=pass (good signature; 2048-bit key) header.d=Example.COM "
        'header.i=@example.com header.b="ab cd"; spf=fail smtp.mailfrom=bounce@example.com; '
        'dmarc=pass (p=reject) header.from=example.com; arc=none reason="a; b"'
    )
    result = parse(header)
    assert result is not None
    assert result.authserv_id == "mx.example.com"
    methods = {r.method: r for r in result.results}
    assert methods["dkim"].result == "pass"
    assert methods["dkim"].properties["header.d"] == "example.com"
    assert methods["dkim"].properties["header.b"] == "ab cd"
    assert methods["spf"].result == "fail"
    assert methods["dmarc"].properties["header.from"] == "example.com"
    assert methods["arc"].properties["reason"] == "a; b"


@pytest.mark.parametrize("header", ["", ";", "   ", "(only a comment)"])
def test_empty_headers_have_no_authserv_id(header: str) -> None:
    assert parse(header) is None


def test_none_result_has_no_methods() -> None:
    result = parse("mx.example.com; none")
    assert result is not None and result.results == ()


def test_only_the_topmost_trusted_header_counts() -> None:
    real = "mx.example.com; dkim=fail header.d=example.com"
    forged_below = "mx.example.com; dkim=pass header.d=example.com"
    chosen = first_trusted([real, forged_below], TRUSTED)
    assert chosen is not None and vouches_for(chosen, "example.com") is None


def test_untrusted_authserv_ids_are_never_read() -> None:
    forged = "evil.example.net; dkim=pass header.d=example.com"
    assert first_trusted([forged], TRUSTED) is None
    assert first_trusted(["MX.Example.com; dkim=pass header.d=example.com"], TRUSTED) is not None


@pytest.mark.parametrize(
    ("clause", "domain", "method"),
    [
        ("dkim=pass header.d=example.com", "example.com", "dkim"),
        ("dkim=pass header.d=example.com", "mail.example.com", "dkim"),
        ("dkim=pass header.d=mail.example.com", "example.com", None),
        ("dkim=pass header.d=evil.test", "example.com", None),
        ("dkim=pass header.d=com", "example.com", None),
        ("dkim=pass header.d=notexample.com", "example.com", None),
        ("dkim=fail header.d=example.com", "example.com", None),
        ("dkim/1=pass header.d=example.com", "example.com", "dkim"),
        ("spf=pass smtp.mailfrom=bounce@example.com", "example.com", "spf"),
        ("spf=pass smtp.mailfrom=example.com", "example.com", "spf"),
        ("spf=pass smtp.mailfrom=bounce@evil.test", "example.com", None),
        ("spf=softfail smtp.mailfrom=example.com", "example.com", None),
        ("dmarc=pass header.from=example.com", "example.com", "dmarc"),
        ("dmarc=pass header.from=evil.test", "example.com", None),
        ("dkim=pass (header.d=example.com) header.d=evil.test", "example.com", None),
    ],
)
def test_alignment(clause: str, domain: str, method: str | None) -> None:
    result = parse(f"mx.example.com; {clause}")
    assert result is not None
    assert vouches_for(result, domain) == method


def test_aligned_needs_a_real_parent_domain() -> None:
    assert aligned("example.com", "a.b.example.com")
    assert not aligned("", "example.com")
    assert not aligned("ample.com", "example.com")
