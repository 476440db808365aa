"""HMAC Message-IDs: minting, verifying, forging, and the shared secret in the database."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.agents.tokens import SECRET_KEY, Token, Tokens, load_secret
from postdesk.daemon.config import ConfigError, HelpdeskSettings, Settings
from postdesk.daemon.store.db import transaction
from postdesk.models.schema import KeyValue

SECRET = b"s3cret-for-tests"


@pytest.fixture
def tokens() -> Tokens:
    """Tokens on the test secret and domain."""
    return Tokens(SECRET, "example.com")


def test_customer_token_round_trip(tokens: Tokens) -> None:
    message_id = tokens.mint(42)
    assert message_id.startswith("<pd.42.c.") and message_id.endswith("@example.com>")
    assert tokens.verify(message_id) == Token(42, None)
    assert tokens.is_ours(message_id)


def test_agent_token_names_agent_by_keyed_hash(tokens: Tokens) -> None:
    message_id = tokens.mint(7, "Alice@Example.com")
    token = tokens.verify(message_id)
    assert token == Token(7, tokens.agent_key("alice@example.com"))
    assert "alice" not in message_id.lower()
    assert tokens.agent_key("bob@example.com") != token.agent_key


def test_every_minted_id_is_unique(tokens: Tokens) -> None:
    assert len({tokens.mint(1) for _ in range(200)}) == 200


def test_verify_tolerates_missing_brackets_case_and_whitespace(tokens: Tokens) -> None:
    message_id = tokens.mint(3)
    assert tokens.verify(f"  {message_id[1:-1].upper()}\t") == Token(3, None)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.replace("<pd.5.", "<pd.6."),  # another ticket number
        lambda m: m.replace(".c.", ".01234567."),  # claim to be addressed to an agent
        lambda m: m[:-15] + ("0" if m[-15] != "0" else "1") + m[-14:],  # flip a MAC digit
        lambda m: m.split("@")[0] + ">",  # no domain
    ],
)
def test_tampered_ids_do_not_verify(tokens: Tokens, mutate: Callable[[str], str]) -> None:
    forged = mutate(tokens.mint(5))
    assert tokens.verify(forged) is None


@pytest.mark.parametrize(
    "foreign",
    [
        "",
        "<>",
        "<CAF=abc@mail.gmail.com>",
        "<pd.1.c.x.y@example.com>",
        "<pd.99999999999999999999.c.0000000000.00000000000000000000@x>",
        "<pd.1.c.0000000000.00000000000000000000@example.com>\r\nBcc: x@y",
        "<pd.1.c.0000000000.00000000000000000000@example.com>",
        "<" + "a" * 5000 + "@example.com>",
    ],
)
def test_foreign_ids_are_not_ours(tokens: Tokens, foreign: str) -> None:
    assert tokens.verify(foreign) is None
    assert not tokens.is_ours(foreign)


def test_another_secret_does_not_verify(tokens: Tokens) -> None:
    assert Tokens(b"other-secret", "example.com").verify(tokens.mint(1)) is None


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        Tokens(b"", "example.com")


def test_configured_secret_wins(factory: sessionmaker[Session]) -> None:
    settings = Settings(helpdesk=HelpdeskSettings(secret="inline-secret"))
    with transaction(factory) as session:
        assert load_secret(session, settings) == b"inline-secret"
        assert session.get(KeyValue, SECRET_KEY) is None


def test_secret_from_environment(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_TEST_SECRET", "from-env")
    settings = Settings(helpdesk=HelpdeskSettings(secret_env="PD_TEST_SECRET"))
    with transaction(factory) as session:
        assert load_secret(session, settings) == b"from-env"
    monkeypatch.delenv("PD_TEST_SECRET")
    with pytest.raises(ConfigError, match="PD_TEST_SECRET"), transaction(factory) as session:
        load_secret(session, settings)


def test_stored_secret_is_created_once_and_shared(factory: sessionmaker[Session]) -> None:
    settings = Settings()
    with transaction(factory) as session:
        first = load_secret(session, settings)
    with transaction(factory) as session:
        second = load_secret(session, settings)
        count = session.scalar(select(func.count()).select_from(KeyValue))
    assert first == second and len(first) >= 32
    assert count == 1


def test_concurrent_insert_by_another_daemon_is_tolerated(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    with transaction(factory) as session:
        session.add(KeyValue(key=SECRET_KEY, value="theirs"))
    with transaction(factory) as session:
        # This daemon looked before the other one committed: it saw no row, then inserts.
        monkeypatch.setattr(session, "get", lambda *args, **kwargs: None)
        assert load_secret(session, Settings()) == b"theirs"
    with transaction(factory) as session:
        assert session.scalar(select(func.count()).select_from(KeyValue)) == 1


def test_ids_verify_after_a_restart(factory: sessionmaker[Session]) -> None:
    settings = Settings()
    with transaction(factory) as session:
        stored = load_secret(session, settings)
    tokens = Tokens(stored, "example.com")
    with transaction(factory) as session:
        again = Tokens(load_secret(session, settings), "example.com")
    assert again.verify(tokens.mint(9)) == Token(9, None)


def test_minted_ids_and_agent_keys_keep_their_documented_hmac(tokens: Tokens) -> None:
    """IDs already sent out must keep verifying: the MAC and agent key are HMAC-SHA256 over
    exactly these bytes, whatever is precomputed or remembered between calls."""
    for _ in range(3):
        for agent in ("Alice@Example.com", " alice@example.com ", "bob@example.com", None):
            body, _, mac = tokens.mint(9, agent)[1:].partition("@")[0].rpartition(".")
            expected = hmac.new(SECRET, b"message-id\0" + body.encode(), hashlib.sha256)
            assert mac == expected.hexdigest()[:20]
            if agent is not None:
                key = hmac.new(SECRET, b"agent\0" + agent.strip().lower().encode(), hashlib.sha256)
                assert body.split(".")[2] == tokens.agent_key(agent) == key.hexdigest()[:8]
