"""A store, ``[[stores]]``: one country on one Back Market account, its token's variable,
its hosts and the rules that differ from the global ones.
"""

from __future__ import annotations

import re
from typing import Final, Literal, cast

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from syncer.config.alerts import AlertSettings
from syncer.config.sections import LOOPBACK_HOSTS, Section
from syncer.core.vocabulary import PLATFORM_OF, market_currency

Platform = Literal["EU", "US", "AP"]


HOSTS: Final = {
    ("EU", "production"): "https://www.backmarket.fr",
    ("EU", "preprod"): "https://preprod.backmarket.fr",
    ("US", "production"): "https://www.backmarket.com",
    ("US", "preprod"): "https://preprod.backmarket.com",
    ("AP", "production"): "https://www.backmarket.co.jp",
    ("AP", "preprod"): "https://preprod.backmarket.co.jp",
}


STORE_NAME_MAX: Final = 64  # the state keeps store names in columns of this length


class StoreSettings(Section):
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
    # `syncer daemon` looks at the catalog this often and sends a stock-out or a lower stock
    # at once, within the stock lane's share (syncer/pipeline/watch.py); 0 turns it off.
    stock_watch_seconds: float = Field(20, ge=0)
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
