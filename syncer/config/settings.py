"""Configuration: a TOML file, ``SYNCER_*`` environment variables and ``.env``.

Precedence, highest first: environment variables, ``.env``, the TOML file, defaults. Nested
keys use a double underscore: ``SYNCER_CATALOG__PATH``, ``SYNCER_STATE_URL``.
Tokens are never written in the TOML file: each store names the environment variable that
holds its token (``token_env``), read from the environment or ``.env`` only when a command
needs to talk to Back Market.

The sections are in ``sections`` and ``stores``; this module holds the root ``Settings``
(paths, and the tokens and secrets it can reach) and ``load_settings``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from dotenv import dotenv_values
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from syncer.config.alerts import AlertSettings, register_webhook_url
from syncer.config.sections import (
    LEASE_THIRDS,
    ApiSettings,
    CatalogSettings,
    Limits,
    MarketSettings,
    OrderSettings,
)
from syncer.config.stores import StoreSettings
from syncer.core import secrets
from syncer.errors import ConfigError

DEFAULT_CONFIG: Final = "syncer.toml"


def _bundled_mappings() -> Path:
    """The profiles shipped with the package: package data (syncer/mappings) in an installed
    wheel, the repository's mappings/ folder in a source checkout or an editable install."""
    package = Path(__file__).resolve().parent.parent  # syncer/, above syncer/config/
    installed = package / "mappings"
    return installed if installed.is_dir() else package.parent / "mappings"


BUNDLED_MAPPINGS: Final = _bundled_mappings()


class _SettingsOnly(PydanticBaseSettingsSource):
    """``.env`` read as the environment is: only the keys that name a setting. The rest
    (store tokens, whatever name ``token_env`` gives them, other tools' variables) is not
    configuration, so it is no error; tokens are read from it by ``Settings.token``."""

    def __init__(self, settings_cls: type[BaseSettings],
                 inner: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.inner = inner

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        return {key: value for key, value in self.inner().items()
                if key in self.settings_cls.model_fields}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SYNCER_", env_nested_delimiter="__", extra="forbid", env_file=None
    )

    catalog: CatalogSettings = CatalogSettings()
    mapping: str = "default"
    state_url: str = "sqlite:///state/syncer.db"
    api: ApiSettings = ApiSettings()
    limits: Limits = Limits()
    orders: OrderSettings = OrderSettings()
    market: MarketSettings = MarketSettings()
    stores: list[StoreSettings] = Field(default_factory=list)
    alerts: AlertSettings = AlertSettings()  # see syncer/config/alerts.py

    # Where relative paths resolve: the directory of the TOML file (not part of the file).
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _check_stores(self) -> Settings:
        names = [s.name for s in self.stores]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"store names must be unique: {', '.join(sorted(duplicates))}")
        seen: dict[tuple[str, str], str] = {}
        for store in self.stores:
            key = (store.account, store.locale)
            if key in seen:
                raise ValueError(
                    f"stores {seen[key]} and {store.name} both publish to {store.locale} on "
                    "the same account: one store per country"
                )
            seen[key] = store.name
        return self

    @model_validator(mode="after")
    def _check_lease(self) -> Settings:
        lease, minimum = self.limits.lock_lease_seconds, self.min_lease_seconds()
        if lease < minimum:
            raise ValueError(
                f"limits.lock_lease_seconds = {lease:g} is too short: at least {minimum:g} s "
                "with these settings. Each request may take a third of the lease, and a third "
                f"must hold two attempts at api.timeout_seconds ({self.api.timeout_seconds:g})"
                " and the longest wait between them (api.backoff_cap_seconds or "
                "limits.rate_block_seconds)")
        return self

    def min_lease_seconds(self) -> float:
        """The shortest lock lease the renewal can keep: a third of it (one request's
        deadline) holds a first attempt, the longest wait and a retry."""
        wait = max(self.api.backoff_cap_seconds, self.limits.rate_block_seconds)
        return LEASE_THIRDS * (2 * self.api.timeout_seconds + wait)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=settings_cls.model_config.get(
            "toml_file"))
        return (init_settings, env_settings, _SettingsOnly(settings_cls, dotenv_settings), toml)

    # --- derived values -------------------------------------------------------------------
    def store(self, name: str) -> StoreSettings:
        for store in self.stores:
            if store.name == name:
                return store
        raise ConfigError(
            f"no store named {name!r}; configured stores: "
            + (", ".join(s.name for s in self.stores) or "none")
        )

    def zero_limits(self, store: StoreSettings) -> tuple[float, int]:
        """The mass-zero guard of a store: the share of live offers, and the absolute
        allowance, that a run may take to quantity 0 without --force."""
        share = store.max_zero_share if store.max_zero_share is not None else \
            self.limits.max_zero_share
        allowance = store.zero_allowance if store.zero_allowance is not None else \
            self.limits.zero_allowance
        return share, allowance

    def selected_stores(self, name: str | None) -> list[StoreSettings]:
        if name is not None:
            return [self.store(name)]
        stores = [s for s in self.stores if s.enabled]
        if not stores:
            raise ConfigError("no enabled store is configured ([[stores]] in the TOML file)")
        return stores

    def resolve(self, path: Path | str) -> Path:
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def catalog_path(self) -> Path:
        if self.catalog.path is None:
            raise ConfigError("no catalog configured: set catalog.path (a CSV file), "
                              "catalog.url with table or query (a database), or pass "
                              "--catalog PATH")
        return self.resolve(self.catalog.path)

    def mapping_path(self) -> Path:
        candidates = [self.resolve(self.mapping)]
        if not self.mapping.endswith(".toml"):
            candidates += [self.resolve(f"mappings/{self.mapping}.toml"),
                           BUNDLED_MAPPINGS / f"{self.mapping}.toml"]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise ConfigError(
            f"mapping profile {self.mapping!r} not found (looked at "
            + ", ".join(str(c) for c in candidates) + ")"
        )

    def state_database_url(self) -> str:
        """The state URL with a relative SQLite path made relative to the config file."""
        url = self.state_url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rest = url[len("sqlite:///"):]
            if rest and not rest.startswith(":memory:") and not rest.startswith("file:"):
                return "sqlite:///" + str(self.resolve(rest))
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        return url

    def state_dir(self) -> Path:
        """Saved plans and reports live beside a SQLite state, else under ``state/``."""
        url = self.state_database_url()
        if url.startswith("sqlite:///") and ":memory:" not in url:
            return Path(url[len("sqlite:///"):]).parent
        return self.resolve("state")

    def token(self, store: StoreSettings) -> SecretStr:
        """The store's token, from the environment or the ``.env`` beside the TOML file (or
        in the working directory); never logged."""
        value = self._token_value(store)
        if not value:
            raise ConfigError(
                f"store {store.name}: no token; set the environment variable "
                f"{store.token_env} (or put it in .env) to the token from the Back Market "
                "back office"
            )
        token = value.strip()
        secrets.register(token)
        if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
            # Said without the token itself: it is a secret even when it is wrong.
            raise ConfigError(
                f"store {store.name}: the token in {store.token_env} contains spaces, line "
                "breaks or non-ASCII characters; copy it again from the Back Market back "
                "office")
        return SecretStr(token)

    def _token_value(self, store: StoreSettings) -> str | None:
        assert store.token_env is not None
        return self._secret_value(store.token_env)

    def _secret_value(self, name: str) -> str | None:
        value = os.environ.get(name)
        if value is None:
            for env_file in (self.base_dir / ".env", Path(".env")):
                if env_file.is_file():
                    found = dotenv_values(env_file).get(name)
                    if found:
                        return found
        return value

    def shop_key(self) -> SecretStr:
        """The public-shop scraper's API key (``[market.shop] key_env``); never logged."""
        shop = self.market.shop
        if shop is None:
            raise ConfigError("no public-shop view configured ([market.shop] base_url)")
        value = (self._secret_value(shop.key_env) or "").strip()
        if not value:
            raise ConfigError(f"market.shop: no API key; set the environment variable "
                              f"{shop.key_env} (or put it in .env)")
        secrets.register(value)
        if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
            raise ConfigError(f"market.shop: the key in {shop.key_env} contains spaces, line "
                              "breaks or non-ASCII characters")
        return SecretStr(value)

    def register_secrets(self) -> None:
        """Tell ``syncer.core.secrets`` every secret these settings can reach, so that whatever
        echoes one back (a server, a driver's message) is scrubbed (invariant 9)."""
        for store in self.stores:
            value = self._token_value(store)
            if value:
                secrets.register(value.strip())
        if self.market.shop is not None:
            value = self._secret_value(self.market.shop.key_env)
            if value:
                secrets.register(value.strip())
        secrets.register_url_password(self.state_url)
        if self.catalog.url is not None:
            secrets.register_url_password(self.catalog.url.get_secret_value())
        self._register_alert_secrets()

    # --- alerts (syncer/alerts/events.py) -----------------------------------------------------
    def alerts_for(self, store: StoreSettings) -> AlertSettings:
        """The store's alert settings: its own [stores.alerts] over the global [alerts]."""
        return self.alerts if store.alerts is None else store.alerts.over(self.alerts)

    def env_value(self, name: str) -> str | None:
        """A variable from the environment, else from the ``.env`` beside the TOML file (or
        in the working directory), as tokens are read; None when unset or blank."""
        value = os.environ.get(name)
        if value is None:
            for env_file in (self.base_dir / ".env", Path(".env")):
                if env_file.is_file():
                    value = dotenv_values(env_file).get(name) or None
                    if value:
                        break
        return value.strip() if value and value.strip() else None

    def _register_alert_secrets(self) -> None:
        """Webhook URLs (whole, and their credential parts) and SMTP passwords of
        every store's alert channels, so that no log or message ever shows one."""
        for alerts in [self.alerts, *(s.alerts for s in self.stores if s.alerts)]:
            for channel in (alerts.webhook, alerts.slack):
                if channel is not None:
                    register_webhook_url(channel.url.get_secret_value() if channel.url
                                         else self.env_value(channel.url_env or ""))
            if alerts.email is not None and alerts.email.password_env:
                secrets.register(self.env_value(alerts.email.password_env))


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (``syncer.toml`` by default, or ``$SYNCER_CONFIG``) and the env."""
    explicit = path is not None or "SYNCER_CONFIG" in os.environ
    config_path = Path(path or os.environ.get("SYNCER_CONFIG", DEFAULT_CONFIG)).expanduser()
    if not config_path.is_file():
        # Never "no stores, nothing to do": a command run in the wrong folder says so.
        if explicit:
            raise ConfigError(f"configuration file not found: {config_path}")
        raise ConfigError(f"no configuration: {config_path.resolve()} not found; run in the "
                          "folder of your syncer.toml or pass --config FILE")
    base_dir = config_path.parent.resolve()
    env_file = base_dir / ".env"

    class _FileSettings(Settings):
        model_config = SettingsConfigDict(
            toml_file=config_path,
            env_file=env_file if env_file.is_file() else None,
            env_file_encoding="utf-8",
        )

    try:
        settings = _FileSettings(base_dir=base_dir, **overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, config_path)) from None
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"cannot read {config_path}: {exc}") from None
    settings.register_secrets()
    return settings


def _explain(exc: ValidationError, path: Path) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    if len(problems) == 1:  # the usual case: one line
        return f"invalid configuration in {path}: {problems[0]}"
    return "\n  ".join([f"invalid configuration in {path}:", *problems])
