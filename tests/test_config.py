"""Configuration: TOML + SYNCER_* environment + .env, tokens as secrets, store rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from syncer.cli.main import cli
from syncer.config.settings import load_settings
from syncer.config.stores import StoreSettings
from syncer.errors import ConfigError
from tests.conftest import TOKEN, write_config
from tests.helpers import checked_emulator


def test_toml_is_read_and_relative_paths_follow_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, state_url="sqlite:///state/x.db")
    settings = load_settings(config)
    assert [s.name for s in settings.stores] == ["fr", "de"]
    assert settings.catalog_path() == tmp_path / "catalog.csv"
    assert settings.state_database_url() == f"sqlite:///{tmp_path}/state/x.db"
    fr = settings.store("fr")
    assert (fr.platform, fr.currency, fr.warranty_min_months) == ("EU", "EUR", 6)
    assert fr.base_url() == "https://www.backmarket.fr"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, state_url="sqlite:///a.db")
    monkeypatch.setenv("SYNCER_STATE_URL", "postgresql://u@db/prod")
    monkeypatch.setenv("SYNCER_CATALOG__PATH", "/data/other.csv")
    settings = load_settings(config)
    assert settings.state_database_url() == "postgresql+psycopg://u@db/prod"
    assert settings.catalog_path() == Path("/data/other.csv")


def test_token_comes_from_the_environment_or_dotenv(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, state_url="sqlite:///a.db")
    monkeypatch.delenv("SYNCER_TEST_TOKEN", raising=False)
    settings = load_settings(config)
    with pytest.raises(ConfigError, match="set the environment variable SYNCER_TEST_TOKEN"):
        settings.token(settings.store("fr"))
    (tmp_path / ".env").write_text(f"SYNCER_TEST_TOKEN={TOKEN}\n")
    secret = settings.token(settings.store("fr"))
    assert secret.get_secret_value() == TOKEN
    assert TOKEN not in repr(secret) and TOKEN not in str(settings)


def test_plain_http_is_refused_except_on_loopback() -> None:
    assert StoreSettings(name="x", locale="fr-fr",
                         environment="http://127.0.0.1:8765").base_url() == \
        "http://127.0.0.1:8765"
    with pytest.raises(ValueError, match="only allowed on loopback"):
        StoreSettings(name="x", locale="fr-fr", environment="http://backmarket.example")


def test_store_currency_must_be_the_markets() -> None:
    assert StoreSettings(name="uk", locale="en-gb").currency == "GBP"
    with pytest.raises(ValueError, match="sells in SEK"):
        StoreSettings(name="se", locale="sv-se", currency="EUR")


def test_unknown_locale_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown locale 'fr-ca'.*fr-fr"):
        StoreSettings(name="ca", locale="fr-ca")


def test_two_stores_for_one_country_are_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, state_url="sqlite:///a.db",
                          stores=(("fr", "fr-fr"), ("fr2", "fr-fr")))
    with pytest.raises(ConfigError, match="one store per country"):
        load_settings(config)


def test_invalid_file_names_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, state_url="sqlite:///a.db", extra="colour = 'blue'")
    with pytest.raises(ConfigError, match="colour"):
        load_settings(config)


def test_user_agent_needs_a_contact_email(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, state_url="sqlite:///a.db"))
    assert settings.api.user_agent() == "BM-Tests-suite;tests@example.com"
    settings.api.contact_email = ""
    with pytest.raises(ConfigError, match="contact_email"):
        settings.api.user_agent()


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize("bad", ["abc def", "abc\ndef", "tökén"])
def test_a_token_with_spaces_breaks_or_non_ascii_is_refused_without_showing_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    settings = load_settings(write_config(tmp_path, state_url="sqlite:///a.db"))
    monkeypatch.setenv("SYNCER_TEST_TOKEN", bad)
    with pytest.raises(ConfigError, match="copy it again") as caught:
        settings.token(settings.store("fr"))
    assert bad not in str(caught.value)


def test_tokens_in_dotenv_beside_the_config_work_from_any_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's way: tokens in ``.env`` beside ``syncer.toml``, under the default name
    (SYNCER_TOKEN_FR) or the one token_env gives (BM_TOKEN), next to entries of other tools.
    Every command reads them, run from the folder or from elsewhere with --config."""
    for name in ("SYNCER_TOKEN_FR", "BM_TOKEN", "SYNCER_TEST_TOKEN", "SYNCER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    folder, elsewhere = tmp_path / "shop", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    with checked_emulator() as server:
        config = write_config(folder, state_url="sqlite:///state/syncer.db",
                              environment=server.base_url)
        text = config.read_text(encoding="utf-8")
        text = text.replace('token_env = "SYNCER_TEST_TOKEN"', "", 1)  # fr: SYNCER_TOKEN_FR
        config.write_text(text.replace("SYNCER_TEST_TOKEN", "BM_TOKEN"), encoding="utf-8")
        (folder / ".env").write_text(
            f"SYNCER_TOKEN_FR={TOKEN}\nBM_TOKEN={TOKEN}\nOTHER_TOOL_URL=https://x.example\n"
            "SYNCER_STATE_URL=sqlite:///state/from-dotenv.db\n", encoding="utf-8")
        settings = load_settings(config)
        assert [s.token_env for s in settings.stores] == ["SYNCER_TOKEN_FR", "BM_TOKEN"]
        assert settings.state_url == "sqlite:///state/from-dotenv.db"  # .env still configures

        for cwd, args in ((elsewhere, ["--config", str(config)]), (folder, [])):
            monkeypatch.chdir(cwd)
            for command in (["check"], ["status"]):
                result = CliRunner().invoke(cli, [*args, *command])
                assert result.exit_code == 0, (cwd, command, result.output, result.stderr)
            assert "fr: OK" in CliRunner().invoke(cli, [*args, "check"]).stdout


def test_a_store_name_longer_than_the_state_keeps_is_refused_naming_it(tmp_path: Path) -> None:
    name = "shop-" + "x" * 60
    config = write_config(tmp_path, state_url="sqlite:///a.db", stores=((name, "fr-fr"),))
    with pytest.raises(ConfigError, match=f"store '{name}': the name has 65 characters, at "
                                          "most 64"):
        load_settings(config)


def test_no_configuration_is_an_error_naming_where_it_looked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty folder is not "no stores, all is well": every command says what is missing
    (one error line, exit 1), and an unknown store is an error for status and errors too."""
    monkeypatch.delenv("SYNCER_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    for command in (["status"], ["errors"], ["plan"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 1, (command, result.output)
        assert result.stdout == ""
        assert result.stderr == (f"error: no configuration: {tmp_path / 'syncer.toml'} not "
                                 "found; run in the folder of your syncer.toml or pass "
                                 "--config FILE\n"), command
    write_config(tmp_path, state_url="sqlite:///state/syncer.db")
    for command in ("status", "errors", "plan"):
        result = CliRunner().invoke(cli, [command, "--store", "nope"])
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr == "error: no store named 'nope'; configured stores: fr, de\n"


def test_commands_over_every_configured_store_refuse_an_unknown_store_and_no_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """status, errors, retry and alerts test work on the store named or on every configured
    one, enabled or not: an unknown name, or no [[stores]] at all, is one error line, exit 1."""
    monkeypatch.chdir(tmp_path)
    commands = (["status"], ["errors"], ["retry", "SKU-1"], ["alerts", "test"])
    write_config(tmp_path, state_url="sqlite:///state/syncer.db")
    for command in commands:
        result = CliRunner().invoke(cli, [*command, "--store", "nope"])
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr == "error: no store named 'nope'; configured stores: fr, de\n"
    write_config(tmp_path, state_url="sqlite:///state/syncer.db", stores=())
    for command in commands:
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 1, (command, result.output)
        assert result.stdout == ""
        assert result.stderr == ("error: no store is configured ([[stores]] in the TOML "
                                 "file)\n"), command
