"""Configuration: defaults, TOML, environment overrides, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from postdesk.daemon.config import ConfigError, load_settings


def test_defaults_run_with_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, environ={})
    assert settings.smtp.listen == "127.0.0.1:2525"
    assert settings.helpdesk.address == "support@localhost"
    assert settings.helpdesk.tag == "Support"
    assert settings.database_url == "sqlite:///postdesk-data/postdesk.db"
    assert settings.outbound.relay == ""
    assert settings.imap == () and settings.source == "built-in defaults"


def test_file_then_environment_override(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text(
        '[helpdesk]\ntag = "Example"\naddress = "support@example.com"\n'
        '[smtp]\nlisten = "127.0.0.1:2600"\n'
        '[[agents]]\nemail = "alice@example.com"\nname = "Alice"\ngroups = ["L1"]\n'
    )
    env = {"POSTDESK_SMTP_LISTEN": "127.0.0.1:2700", "POSTDESK_SMTP_MAX_RECIPIENTS": "5"}
    settings = load_settings(str(config), environ=env)
    assert settings.helpdesk.tag == "Example"
    assert settings.smtp.host_port == ("127.0.0.1", 2700)
    assert settings.smtp.max_recipients == 5
    assert settings.agent("ALICE@example.com") is not None
    assert settings.agents[0].groups == ("L1",)


def test_agents_are_found_by_address_in_any_case(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text(
        f'[helpdesk]\ndata_dir = "{tmp_path / "data"}"\n'
        '[[agents]]\nemail = "Alice@Example.com"\nname = "Alice"\n'
        '[[agents]]\nemail = "bob@example.com"\nname = "Bob"\n'
    )
    settings = load_settings(str(config), environ={})
    found = settings.agent("alice@EXAMPLE.com")
    assert found is not None and found.name == "Alice"
    assert settings.agent("BOB@example.com") is settings.agents[1]
    assert settings.agent("carol@example.com") is None
    assert settings.agent(None) is None and settings.agent("") is None
    assert settings.data_dir == tmp_path / "data"
    assert settings.data_dir is settings.data_dir  # one Path, made once


def test_postdesk_config_variable_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text('[helpdesk]\ntag = "Env"\n')
    assert load_settings(None, environ={"POSTDESK_CONFIG": str(config)}).helpdesk.tag == "Env"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[smtp]\nlisten = 25\n", "smtp.listen"),
        ("[smtp]\nlisten = 'nohostport'\n", "smtp.listen"),
        ("[smtp]\nlistne = '127.0.0.1:25'\n", "smtp.listne"),
        ("[helpdesk]\nreopen_days = 'soon'\n", "helpdesk.reopen_days"),
        ("[[imap]]\nsecurity = 'ssl'\n", "imap[0].security"),
        ("[outbound]\nrelay = 'mail.example.com'\n", "outbound.relay"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        ("[helpdesk\n", "not valid TOML"),
    ],
)
def test_a_bad_key_or_value_is_named(tmp_path: Path, text: str, named: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_settings(str(config), environ={})


def test_bad_environment_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"smtp\.max_recipients"):
        load_settings(None, environ={"POSTDESK_SMTP_MAX_RECIPIENTS": "many"})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(str(tmp_path / "missing.toml"), environ={})
