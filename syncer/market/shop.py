"""The public shop as buyers see it, through the parse.bot Back Market scraper API.

``GET {base_url}/get_product_details?product_id=<uuid>`` with ``X-API-Key``: the product's
title, rating, review count, availability and, per grade variant, the starting price. One
call is one credit; tiers allow 5 to 250 calls a minute and 100 to 5,000 credits a month.
Each call first takes a credit from the month's allowance kept in the state (``[market.shop]
monthly_credits``): past it, nothing is sent. The key lives in the client's headers only and
is registered as a secret (never in logs, output, state or errors).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from syncer.backmarket.limits import RateLimiter
from syncer.core.secrets import scrub
from syncer.errors import ApiError, ConfigError

UUID: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                         r"[0-9a-fA-F]{12}")
MAX_ANSWER_BYTES: Final = 4 * 2**20


def product_uuid(text: str) -> str:
    """The product UUID of a UUID or a Back Market product URL (its last UUID)."""
    found = UUID.findall(urlsplit(text).path if "://" in text else text)
    if not found or ("://" not in text and found[0] != text.strip()):
        raise ConfigError(f"{text!r} is neither a product UUID nor a product URL with one")
    return str(found[-1]).lower()


class _Price(BaseModel):
    model_config = ConfigDict(extra="allow")
    amount: str | float | int | None = None
    currency: str | None = Field(None, max_length=3)


class _Item(BaseModel):
    model_config = ConfigDict(extra="allow")
    label: str = Field("", max_length=200)
    price: _Price | None = None


class _Group(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = Field(None, max_length=100)
    label: str | None = Field(None, max_length=200)
    items: list[_Item] = Field(default_factory=list, max_length=100)


class _Availability(BaseModel):
    model_config = ConfigDict(extra="allow")
    in_stock: bool | None = None
    can_add_to_cart: bool | None = None


class _Details(BaseModel):
    model_config = ConfigDict(extra="allow")
    uuid: str | None = Field(None, max_length=64)
    title: str | None = Field(None, max_length=500)
    rating: float | None = Field(None, ge=0, le=5, allow_inf_nan=False)
    review_count: int | None = Field(None, ge=0)
    starting_price: str | float | int | None = None
    availability: _Availability | None = None
    variants: list[_Group] = Field(default_factory=list, max_length=50)


def _amount(value: Any) -> str | None:
    """A price the shop shows, as two-decimal text; None when it is not a sane amount."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite() or number < 0 or number >= 1_000_000:
        return None
    return f"{number.quantize(Decimal('0.01')):f}"


def summarise(details: Mapping[str, Any]) -> dict[str, Any]:
    """What the market view keeps of a product's details (validated)."""
    try:
        data = _Details.model_validate(details)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ApiError(f"public shop get_product_details: unexpected answer: field {where}: "
                       f"{error['msg']}") from None
    grades = [{"label": item.label, "price": _amount(item.price and item.price.amount),
               "currency": item.price.currency if item.price else None}
              for group in data.variants if group.id in ("grades", "grade", "condition")
              for item in group.items]
    return {"uuid": data.uuid, "title": data.title, "rating": data.rating,
            "review_count": data.review_count,
            "starting_price": _amount(data.starting_price),
            "in_stock": bool(data.availability and data.availability.in_stock),
            "grades": grades}


class ShopClient:
    def __init__(self, base_url: str, key: SecretStr, requests_per_minute: int, *,
                 timeout: float = 30.0, http: httpx.Client | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter or RateLimiter(requests_per_minute, 60.0)
        self._headers = {"X-API-Key": key.get_secret_value(), "Accept": "application/json"}
        self._owns = http is None
        self._http = http or httpx.Client(timeout=timeout)

    def __repr__(self) -> str:
        return f"ShopClient(base_url={self.base_url!r})"

    def close(self) -> None:
        if self._owns:
            self._http.close()

    def product_details(self, product: str) -> dict[str, Any]:
        self.limiter.acquire()
        where = "public shop get_product_details"
        try:
            response = self._http.get(f"{self.base_url}/get_product_details",
                                      params={"product_id": product}, headers=self._headers)
        except httpx.TransportError as exc:
            raise ApiError(f"{where}: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise ConfigError(f"{where}: the API key was refused (HTTP "
                              f"{response.status_code}); check [market.shop] key_env")
        if response.status_code == 429:
            raise ApiError(f"{where}: rate limited (HTTP 429): lower "
                           "[market.shop] requests_per_minute to your tier's")
        if response.status_code >= 400 or len(response.content) > MAX_ANSWER_BYTES:
            raise ApiError(scrub(f"{where}: HTTP {response.status_code}: "
                                 f"{response.text[:200]}"))
        try:
            body = response.json()
        except ValueError:
            raise ApiError(f"{where}: answer is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise ApiError(f"{where}: unexpected answer: no data object")
        return summarise(body["data"])


def shop_name(settings: Any) -> str:
    """Whose credits: one scraper and one key (named by its variable, never the key)."""
    shop = settings.market.shop
    return f"{shop.base_url}|{shop.key_env}"


def refresh_shop(settings: Any, state: Any, products: Sequence[str],
                 now: datetime | None = None, http: httpx.Client | None = None
                 ) -> dict[str, str]:
    """Read these products from the public shop, each within the month's credits; returns
    product -> why it was not read."""
    shop = settings.market.shop
    if shop is None or not products:
        return {}
    now = now or datetime.now(UTC)
    month = now.strftime("%Y-%m")
    name = shop_name(settings)
    errors: dict[str, str] = {}
    client = ShopClient(shop.base_url, settings.shop_key(), shop.requests_per_minute,
                        timeout=shop.timeout_seconds, http=http)
    try:
        for text in products:
            product = product_uuid(text)
            if not state.market.spend_shop_credits(name, month, 1, shop.monthly_credits):
                errors[product] = (f"not read: the {shop.monthly_credits} credits of {month} "
                                   "are spent ([market.shop] monthly_credits)")
                continue
            try:
                state.market.save_shop_view(name, product, client.product_details(product), now)
            except ApiError as exc:
                errors[product] = str(exc)
    finally:
        client.close()
    return errors


def shop_views(settings: Any, state: Any, products: Sequence[str], now: datetime,
               errors: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The public shop's last view of each product, with its age (and why it was not read
    now, if so)."""
    if settings.market.shop is None or not products:
        return []
    name = shop_name(settings)
    month = now.strftime("%Y-%m")
    views = []
    for text in products:
        product = product_uuid(text)
        found = state.market.shop_view(name, product)
        view: dict[str, Any] = {"product": product, "grades": []}
        if found is not None:
            data, read_at = found
            view.update(data, product=product, read_at=read_at.isoformat(timespec="seconds"),
                        read_at_dt=read_at,
                        age_seconds=int((now - read_at).total_seconds()))
        if errors and product in errors:
            view["note"] = errors[product]
        if found is None:
            view["error"] = (errors or {}).get(product) or "never read (use --refresh)"
        view["credits_spent_this_month"] = state.market.shop_credits_spent(name, month)
        views.append(view)
    return views
