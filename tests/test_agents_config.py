"""The configuration keys of the agent workflow: routing, trusted relays, attachment limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from postdesk.daemon.config import ConfigError, Settings, load_settings

AGENT = '[[agents]]\nemail = "alice@example.com"\nname = "Alice"\ngroups = ["L1"]\n'


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    config = tmp_path / "p.toml"
    config.write_text(AGENT + text)
    return load_settings(str(config), environ=environ or {})


def test_routing_and_auth_keys_load(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        '[routing]\ncategories = { billing = "L1" }\nround_robin = ["L1"]\n'
        'default_group = "L1"\n[auth]\ntrusted_relays = ["127.0.0.2", "10.0.0.0/24"]\n'
        "[outbound]\nnotify_attach_max_bytes = 1000\n",
    )
    assert settings.routing.categories == {"billing": "L1"}
    assert settings.routing.round_robin == ("L1",)
    assert settings.auth.trusted_relays == ("127.0.0.2", "10.0.0.0/24")
    assert settings.outbound.notify_attach_max_bytes == 1000


def test_defaults_route_nothing_and_trust_no_relay(tmp_path: Path) -> None:
    settings = _load(tmp_path, "")
    assert settings.routing.categories == {} and settings.routing.round_robin == ()
    assert settings.auth.trusted_relays == ()


def test_environment_overrides_a_table(tmp_path: Path) -> None:
    env = {"POSTDESK_ROUTING_CATEGORIES": '{ outage = "L1" }'}
    assert _load(tmp_path, "", env).routing.categories == {"outage": "L1"}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[auth]\ntrusted_relays = ["mx.example.com"]\n', r"auth.trusted_relays\[0\]"),
        ('[routing]\nround_robin = ["L9"]\n', "routing.round_robin"),
        ("[routing]\ncategories = { billing = 1 }\n", "routing.categories.billing"),
        ('[routing]\ncategories = "billing"\n', "routing.categories"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        _load(tmp_path, text)
