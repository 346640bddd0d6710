"""Configuration: a TOML file, ``SYNCER_*`` environment variables and ``.env``.

Precedence, highest first: environment variables, ``.env``, the TOML file, defaults. Nested
keys use a double underscore: ``SYNCER_CATALOG__PATH``, ``SYNCER_STATE_URL``.
Tokens are never written in the TOML file: each store names the environment variable that
holds its token (``token_env``), read from the environment or ``.env`` only when a command
needs to talk to Back Market.
"""

from __future__ import annotations

import codecs
import os
import re
from pathlib import Path
from typing import Any, Final, Literal, cast

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from syncer.config.alerts import AlertSettings, register_webhook_url
from syncer.core import secrets
from syncer.core.vocabulary import PLATFORM_OF, market_currency
from syncer.errors import ConfigError

Platform = Literal["EU", "US", "AP"]

HOSTS: Final = {
    ("EU", "production"): "https://www.backmarket.fr",
    ("EU", "preprod"): "https://preprod.backmarket.fr",
    ("US", "production"): "https://www.backmarket.com",
    ("US", "preprod"): "https://preprod.backmarket.com",
    ("AP", "production"): "https://www.backmarket.co.jp",
    ("AP", "preprod"): "https://preprod.backmarket.co.jp",
}
LOOPBACK_HOSTS: Final = ("127.0.0.1", "localhost", "[::1]", "::1")
DEFAULT_CONFIG: Final = "syncer.toml"
STORE_NAME_MAX: Final = 64  # the state keeps store names in columns of this length


def _bundled_mappings() -> Path:
    """The profiles shipped with the package: package data (syncer/mappings) in an installed
    wheel, the repository's mappings/ folder in a source checkout or an editable install."""
    package = Path(__file__).resolve().parent.parent  # syncer/, above syncer/config/
    installed = package / "mappings"
    return installed if installed.is_dir() else package.parent / "mappings"


BUNDLED_MAPPINGS: Final = _bundled_mappings()
# A store's run lock (invariant 7) is kept in thirds of its lease: renewed every third, and
# each request to Back Market, its retries and waits included, given at most a third. A
# renewal then comes at most two thirds after the one before: a third is left as margin.
LEASE_THIRDS: Final = 3


def lease_renew_every(lease_seconds: float) -> float:
    """How often a run renews its lock lease (checked before every request)."""
    return lease_seconds / LEASE_THIRDS


def request_deadline(lease_seconds: float) -> float:
    """The longest one request may take, retries and waits included, under this lease."""
    return lease_seconds / LEASE_THIRDS


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CatalogSettings(_Section):
    path: Path | None = None
    # "utf-8" also accepts a byte-order mark. legacy_encoding (e.g. "cp1252") reads the lines
    # that are not valid UTF-8 (the others stay UTF-8, the plan names them); without it such a
    # file is an error, never silently mangled.
    encoding: str = "utf-8"
    legacy_encoding: str | None = None
    delimiter: Literal[";", ",", "\t", "|"] | None = None  # None: detected from the header line
    # Or a database (syncer/catalog/sql.py): a SQLAlchemy URL and a table/view or a query. The
    # URL may hold a password: a secret, never shown (set it with SYNCER_CATALOG__URL).
    url: SecretStr | None = None
    table: str | None = None
    query: str | None = None
    batch_size: int = Field(2000, ge=1, le=100_000)  # rows per fetch from the server

    @field_validator("encoding", "legacy_encoding")
    @classmethod
    def _text_encoding(cls, name: str | None) -> str | None:
        # codecs.lookup knows rot13 and base64 too: only a codec that decodes bytes to text
        # can read a catalog (str.encode refuses the others).
        if name is None:
            return name
        try:
            codecs.lookup(name)
        except LookupError:
            raise ValueError(f"unknown encoding {name!r}; expected a text encoding such as "
                             "utf-8 or cp1252") from None
        try:
            "sku".encode(name)
        except LookupError:
            raise ValueError(f"{name!r} is not a text encoding; expected one such as utf-8 "
                             "or cp1252") from None
        return name

    @model_validator(mode="after")
    def _one_source(self) -> CatalogSettings:
        from sqlalchemy.engine import make_url

        database = self.url is not None or self.table is not None or self.query is not None
        if self.path is not None and database:
            raise ValueError("give either path (a CSV file) or url with table or query (a "
                             "database), not both")
        if database and self.url is None:
            raise ValueError("table and query read from a database: set url too")
        if self.url is not None:
            if (self.table is None) == (self.query is None):
                raise ValueError("with url, set exactly one of table (a table or view) or "
                                 "query (a SELECT)")
            try:
                make_url(self.url.get_secret_value().strip())
            except Exception:  # the message would quote the URL, password included
                raise ValueError("url is not a database URL such as "
                                 "postgresql://user:password@host/database") from None
        return self


class ApiSettings(_Section):
    # Back Market's mandatory User-Agent: BM-{company}-{integration};{contact_email}
    company: str = "Syncer"
    integration: str = "backmarket-syncer"
    contact_email: str = ""
    timeout_seconds: float = Field(30.0, gt=0)
    task_poll_seconds: float = Field(15.0, gt=0)
    task_timeout_seconds: float = Field(3600.0, gt=0)
    max_retries: int = Field(5, ge=0)
    # Rows per batch CSV (Back Market takes at most 15,000 lines, header included). Smaller
    # batches finish sooner and put fewer offers in doubt when an answer is lost.
    batch_rows: int = Field(14_999, ge=1, le=14_999)
    # Retries of 5xx, timeouts and dropped connections: exponential backoff with full
    # jitter, from backoff_base_seconds doubling up to backoff_cap_seconds.
    backoff_base_seconds: float = Field(0.5, ge=0)
    backoff_cap_seconds: float = Field(30.0, ge=0)

    def user_agent(self) -> str:
        if not re.fullmatch(r"[^@\s;]+@[^@\s;]+\.[^@\s;]+", self.contact_email):
            raise ConfigError(
                "api.contact_email must be set to a contact address: Back Market requires a "
                "User-Agent of the form BM-{Company}-{Integration};{email}"
            )
        company = re.sub(r"[^A-Za-z0-9]+", "", self.company) or "Syncer"
        integration = re.sub(r"[^A-Za-z0-9_-]+", "", self.integration) or "syncer"
        return f"BM-{company}-{integration};{self.contact_email}"


class Limits(_Section):
    # A run that would take more than this share of a store's live offers to quantity 0
    # (gone from the catalog, stock 0, max_quantity 0...) stops (invariant 5)...
    max_zero_share: float = Field(0.20, ge=0, le=1)
    # ...unless it takes at most this many offline (small stores), and never every live
    # offer of a store that has several.
    zero_allowance: int = Field(1, ge=0)
    # Below Back Market's ~200 requests per 10 s, to keep a margin for other tools.
    requests_per_window: int = Field(150, gt=0)
    window_seconds: float = Field(10.0, gt=0)
    # Back Market allows ~20 per 10 s on its catalog endpoints: the batch CSV ("catalog")
    # ingestion and the category tree. "METHOD /path", a trailing * matches a prefix.
    catalog_requests_per_window: int = Field(18, gt=0)
    catalog_routes: tuple[str, ...] = ("POST /ws/listings", "GET /ws/category*")
    # SKU lines per hour on listing updates (single = 1, batch = its rows), shared by every
    # run and store of one account through the state database. 0: no client-side budget.
    sku_lines_per_hour: int = Field(2000, ge=0)
    # The BackBox competitors endpoint: 2 calls a second per token, Back Market says. The
    # window is 10% longer than a second: a call's arrival time differs from its sending
    # time, and 2 sent a second apart may arrive 0.99 s apart. They count under the
    # general limit too (Cloudflare's limit is per client, whatever the endpoint).
    backbox_requests_per_window: int = Field(2, gt=0)
    backbox_window_seconds: float = Field(1.1, gt=0)
    # After a 429, Back Market blocks the client for about 10 s.
    rate_block_seconds: float = Field(10.0, ge=0)
    # A store's run lock, renewed every third of it; at least Settings.min_lease_seconds().
    lock_lease_seconds: float = Field(900.0, gt=0)
    # An offer refused with the same Back Market error this many runs in a row is
    # quarantined: not sent again until its content changes or `syncer retry SKU`. 0: never.
    quarantine_after: int = Field(3, ge=0)


class OrderSettings(_Section):
    """``[orders]``: how orders are pulled, accepted and shipped (``syncer orders ...``)."""

    # "store": each store pulls its own country's orders; "all": every country of the
    # account. A store may choose for itself with its own order_pull_scope.
    pull_scope: Literal["store", "all"] = "store"
    # Paid lines accepted by `syncer orders accept`: "stock" when the catalog's stock of the
    # SKU covers the quantity, "all", or "manual" (only those listed with --accept FILE).
    accept_policy: Literal["stock", "all", "manual"] = "stock"
    # Each pull reads orders modified since the last one minus this overlap, so that none
    # is missed between two pulls (re-read orders are recognised, not exported twice).
    overlap_minutes: int = Field(60, ge=0)
    # How far back the very first pull of a store reads.
    first_pull_days: int = Field(30, ge=1)
    # CSV and JSON lines exports of each pull; default: orders/ beside the state.
    export_dir: Path | None = None
    # Replaces the carrier table's fallback shipper; "" ships nothing for unknown carriers.
    # Free text of at most 200 characters: Back Market's Shipper list is the known values.
    carrier_fallback: str | None = None
    # Plans hold back, from each SKU's quantity, the units of pulled order lines not shipped
    # or cancelled yet (sold on Back Market, maybe not yet counted by the catalog export).
    # A line stops reserving once shipped: see syncer/planning/reservations.py.
    reserve_unshipped: bool = False

    @model_validator(mode="after")
    def _check_fallback(self) -> OrderSettings:
        from syncer.core.vocabulary import MAX_SHIPPER

        if self.carrier_fallback and len(self.carrier_fallback) > MAX_SHIPPER:
            raise ValueError(f"orders.carrier_fallback is {len(self.carrier_fallback)} "
                             f"characters long; Back Market takes a shipper of at most "
                             f"{MAX_SHIPPER}")
        return self


class ShopSettings(_Section):
    """``[market.shop]``: the public shop as buyers see it, through the parse.bot Back
    Market scraper API (``X-API-Key``; a rate and a monthly credit allowance by tier)."""

    # The scraper's base URL, up to the scraper id: .../scraper/<id>
    base_url: str
    # The environment variable (or .env key) that holds the API key; never in this file.
    key_env: str = "SYNCER_SHOP_KEY"
    # Free 5, Hobby 20, Developer 250 requests a minute.
    requests_per_minute: int = Field(5, gt=0, le=250)
    # Credits (one per call) spent at most per calendar month (UTC), kept in the state.
    monthly_credits: int = Field(100, ge=0)
    timeout_seconds: float = Field(30.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _secure(cls, url: str) -> str:
        match = re.fullmatch(r"(https?)://([^/:]+|\[[^\]]+\])(:\d+)?(/.*)?", url.strip())
        if not match:
            raise ValueError(f"{url!r} is not a base URL like https://api.parse.bot/scraper/ID")
        if match.group(1) == "http" and match.group(2) not in LOOPBACK_HOSTS:
            raise ValueError("plain http:// is only allowed on loopback (the emulator)")
        return url.strip().rstrip("/")


class MarketSettings(_Section):
    """``[market]``: how BackBox reads are spent."""

    # Seconds one market pass may read for, per store; what is left waits for the next.
    pass_seconds: float = Field(300.0, gt=0)
    # Reads per pass at most, per store (0: as many as pass_seconds allows).
    max_reads: int = Field(0, ge=0)
    shop: ShopSettings | None = None


class StoreSettings(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    locale: str
    platform: Platform | None = None
    # "production", "preprod", or a base URL (plain http only on loopback: the emulator).
    environment: str = "production"
    currency: str | None = None
    token_env: str | None = None
    warranty_min_months: int = Field(6, ge=1)
    # A min_price sent with a price must keep Back Market's BackPricer band, min_price <=
    # price <= min_price x 1.08 (it answers INVALID_BACKPRICER_RANGE, or BackBox overrides
    # the price): such a row is rejected for this store. false: only min_price <= price.
    backpricer_band: bool = True
    # Send the DEEE (French recycling fee) only where the marketplace accepts it.
    send_deee: bool = False
    max_zero_share: float | None = Field(None, ge=0, le=1)
    zero_allowance: int | None = Field(None, ge=0)
    # A row whose price for this store is empty while its offer is live here: "reject" (the
    # row is rejected for this store, the offer stays live as published) or "withdraw" (the
    # seller withdraws it: quantity 0, when no other store of the listing still offers it).
    empty_price: Literal["reject", "withdraw"] = "reject"
    enabled: bool = True
    # Orders this store pulls: its own country ("store") or all ("all"); None: [orders].
    order_pull_scope: Literal["store", "all"] | None = None
    # What `syncer run` / `syncer daemon` do for this store, and how often (minutes).
    # Offers and products are enabled independently, as the seller tools do.
    publish_offers: bool = True
    offers_every_minutes: float = Field(120, gt=0)
    publish_products: bool = False
    products_every_minutes: float = Field(1440, gt=0)
    reconcile: bool = True
    reconcile_every_minutes: float = Field(1440, gt=0)
    # The stock lane: quantity changes and zeros only, often, so that a sold-out item goes
    # offline long before the next full offer run; within a share of the hourly budget.
    stock_lane: bool = True
    stock_every_minutes: float = Field(15, gt=0)
    stock_budget_share: float = Field(0.5, gt=0, le=1)
    # [stores.alerts]: this store's alert settings, key by key over the global [alerts].
    alerts: AlertSettings | None = None

    # The market pass (`syncer market`, and `syncer run` when watch_market is on): reads
    # the BackBox of the store's listings (2 a second per token), those with stock that are
    # losing, changed or never read first; a listing read less than market_every_minutes
    # ago is not read again. Off by default: each read is a request to Back Market.
    watch_market: bool = False
    market_every_minutes: float = Field(60, gt=0)

    @field_validator("name")
    @classmethod
    def _short_name(cls, name: str) -> str:
        # The state keys every row by store name, in columns of STORE_NAME_MAX characters.
        if len(name) > STORE_NAME_MAX:
            raise ValueError(f"store {name!r}: the name has {len(name)} characters, at most "
                             f"{STORE_NAME_MAX} are allowed")
        return name

    @model_validator(mode="after")
    def _derive(self) -> StoreSettings:
        if self.locale not in PLATFORM_OF:
            raise ValueError(
                f"store {self.name}: unknown locale {self.locale!r}; expected one of "
                + ", ".join(PLATFORM_OF)
            )
        platform = PLATFORM_OF[self.locale]
        if self.platform is None:
            self.platform = cast(Platform, platform)
        elif self.platform != platform:
            raise ValueError(
                f"store {self.name}: locale {self.locale} belongs to platform {platform}, "
                f"not {self.platform}"
            )
        expected = market_currency(self.locale)
        if self.currency is None:
            self.currency = expected
        elif self.currency.upper() != expected:
            raise ValueError(
                f"store {self.name}: the {self.locale} market sells in {expected}, "
                f"not {self.currency}"
            )
        self.currency = self.currency.upper()
        if self.token_env is None:
            self.token_env = "SYNCER_TOKEN_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper())
        self.base_url()  # fail early on an unusable environment
        return self

    @property
    def country(self) -> str:
        """Country part of the locale: ``fr-be`` -> ``be`` (used in column templates)."""
        return self.locale.split("-")[1]

    @property
    def account(self) -> str:
        """Stores that share listings: same platform and same Back Market host."""
        return f"{self.platform}@{self.base_url()}"

    @property
    def budget_key(self) -> str:
        """Stores that share an hourly SKU budget: one token (named by its variable) on one
        host. The token itself is never stored."""
        return f"{self.base_url()}|{self.token_env}"

    def base_url(self) -> str:
        env = self.environment.strip()
        if env in ("production", "preprod"):
            return HOSTS[(self.platform or PLATFORM_OF[self.locale], env)]
        match = re.fullmatch(r"(https?)://([^/:]+|\[[^\]]+\])(:\d+)?/?", env)
        if not match:
            raise ValueError(
                f"store {self.name}: environment {env!r} is not production, preprod or a "
                "base URL like https://host"
            )
        if match.group(1) == "http" and match.group(2) not in LOOPBACK_HOSTS:
            raise ValueError(
                f"store {self.name}: plain http:// is only allowed on loopback "
                f"(the emulator), not {match.group(2)}"
            )
        return env.rstrip("/")


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
        """Webhook URLs (whole, and their path: the credential part) and SMTP passwords of
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

