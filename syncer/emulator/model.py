"""The state every part of one emulator shares: the model (sellers and their listings,
products, batch tasks), what changed since it was last saved, the faults drawn, the clock,
the logs, and the one lock that every request and helper holds.

It imports only the package's configuration and HTTP types: every part imports it, none of
the parts is imported here.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from syncer.emulator.config import PLATFORMS, EmulatorConfig, Faults, copy_faults
from syncer.emulator.http import Exchange, HttpError, error_v1

__all__ = ["HOUR", "BatchRow", "Dirty", "Listing", "Market", "Model", "Product", "Seller",
           "Shared", "Task", "sku_key"]

HOUR: Final = 3600.0
FIRST_LISTING_ID: Final = 1
FIRST_TASK_ID: Final = 1001
FIRST_BACKMARKET_ID: Final = 50001


@dataclass
class Market:
    """What one listing has in one country (the Accept-Language of the writes)."""

    price: str | None = None
    currency: str | None = None
    comment: str | None = None
    warranty_delay: int | None = None
    min_price: str | None = None
    max_price: str | None = None
    deee: str | None = None
    # slot "1".."3" -> shipper, shipper_display, shipping_delay, shipping_price
    shippings: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Listing:
    id: str
    listing_id: int
    sku: str  # the spelling it was created with
    product_id: str
    grade: str
    quantity: int
    warranty_delay: int  # shown in a country that has none of its own yet
    markets: dict[str, Market] = field(default_factory=dict)
    draft: bool = False  # made or put offline by a batch row's state=3: publication_state 3

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Listing:
        markets = {locale: Market(**m) for locale, m in data["markets"].items()}
        return cls(**{**data, "markets": markets})


@dataclass
class Product:
    product_id: str
    backmarket_id: int
    title: str
    ean: str | None = None
    # "validated", or "pending" while a proposal waits for Back Market's review.
    status: str = "validated"
    proposed_at: float | None = None
    proposer: str | None = None  # the seller's token, the only one who may update it
    content: dict[str, str] = field(default_factory=dict)
    family: str | None = None  # model family: Back Market may resolve it to another of it


@dataclass
class Task:
    task_id: int
    token: str
    locale: str
    catalog: str
    delimiter: str
    quotechar: str
    encoding: str
    rows: int
    created_at: float
    action_status: int = 0  # 0 waiting (shown as 2 once half the delay passed), 8 failed, 9 done
    last_action_error: str | None = None
    result: dict[str, Any] | None = None


@dataclass
class Seller:
    listings: dict[str, Listing] = field(default_factory=dict)  # by SKU key (casefold)
    by_id: dict[str, str] = field(default_factory=dict)
    by_number: dict[int, str] = field(default_factory=dict)
    requests: deque[float] = field(default_factory=deque)
    blocked_until: float = -math.inf
    sku_lines: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, listing: Listing) -> None:
        key = sku_key(listing.sku)
        self.listings[key] = listing
        self.by_id[listing.id] = key
        self.by_number[listing.listing_id] = key

    def by_sku(self, sku: str) -> Listing | None:
        return self.listings.get(sku_key(sku))


def sku_key(sku: str) -> str:
    """Back Market matches SKUs case-insensitively."""
    return sku.strip().casefold()


class BatchRow(NamedTuple):
    """One row of a batch CSV Back Market received (its POST processed)."""

    task_id: int
    token: str
    locale: str
    sku: str


@dataclass
class Model:
    """Every seller's listings, the products, the batch tasks, and the next ids to give."""

    sellers: dict[str, Seller] = field(default_factory=dict)
    tasks: dict[int, Task] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)  # tasks not processed yet, in order
    products: dict[str, Product] = field(default_factory=dict)
    product_by_ean: dict[str, str] = field(default_factory=dict)
    product_by_number: dict[int, str] = field(default_factory=dict)
    next_listing_id: int = FIRST_LISTING_ID
    next_task_id: int = FIRST_TASK_ID
    next_backmarket_id: int = FIRST_BACKMARKET_ID

    def index(self, product: Product) -> None:
        self.products[product.product_id] = product
        self.product_by_number[product.backmarket_id] = product.product_id
        if product.ean:
            self.product_by_ean[product.ean] = product.product_id

    def forget(self, product: Product) -> None:
        self.products.pop(product.product_id, None)
        self.product_by_number.pop(product.backmarket_id, None)
        if product.ean:
            self.product_by_ean.pop(product.ean, None)


@dataclass
class Dirty:
    """What changed since the model was last saved (see ``syncer.emulator.store``)."""

    listings: set[tuple[str, str]] = field(default_factory=set)  # (token, SKU key)
    tasks: set[int] = field(default_factory=set)
    products: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.listings or self.tasks or self.products)

    def clear(self) -> None:
        self.listings.clear()
        self.tasks.clear()
        self.products.clear()


class Shared:
    """One emulator's state, shared by its parts (listings, tasks, products, orders, ...)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.faults: Faults = copy_faults(config.faults)
        if config.realistic:
            self.faults.reuse_listings = self.faults.resolve_products = True
        self.clock = config.clock
        self.lock = threading.RLock()
        self.rng = random.Random(self.faults.seed)
        self.markets = PLATFORMS[config.platform]
        self.model = Model()
        self.dirty = Dirty()
        self.exchanges: list[Exchange] = []
        # Every batch row Back Market received (its POST processed, whatever was answered), in
        # order: what shows a row sent twice, which the task results hide (a row sent again
        # for a SKU that exists is answered "updated").
        self.batch_rows: list[BatchRow] = []
        # Refusals the client caused (rate limit, hourly SKU budget) and injected 429 faults.
        self.stats: dict[str, int] = {"rate_limited": 0, "budget_refused": 0, "injected_429": 0}

    def forget_traffic(self) -> None:
        """Empty the exchange log and the batch rows; counters back to 0."""
        self.exchanges.clear()
        self.batch_rows.clear()
        self.stats = dict.fromkeys(self.stats, 0)

    def seller(self, token: str) -> Seller:
        seller = self.model.sellers.get(token)
        if seller is None:
            if token not in self.config.tokens:
                raise KeyError("unknown token")
            seller = self.model.sellers[token] = Seller()
        return seller

    def touch(self, token: str, listing: Listing) -> None:
        self.dirty.listings.add((token, sku_key(listing.sku)))

    def draw(self, share: float) -> bool:
        return share > 0 and self.rng.random() < share

    def admin_token(self, given: object) -> str:
        """The token an admin request names (the first one by default), else a 404."""
        tokens = self.config.tokens
        token = given if isinstance(given, str) and given else tokens[0]
        if token not in tokens:
            raise HttpError(error_v1(404, "not_found", "unknown token"))
        return token

    def spend_sku_lines(self, seller: Seller, lines: int, now: float) -> None:
        """The hourly SKU-line budget of listing updates (the spec's "Data limitation")."""
        limit = self.config.sku_lines_per_hour
        if limit <= 0 or lines <= 0:
            return
        while seller.sku_lines and seller.sku_lines[0][0] <= now - HOUR:
            seller.sku_lines.popleft()
        used = sum(n for _, n in seller.sku_lines)
        if used + lines > limit:
            self.stats["budget_refused"] += 1
            raise HttpError(
                error_v1(
                    429,
                    "too_many_requests",
                    f"SKU line limit reached: {used} of {limit} lines used in the last hour,"
                    f" this request needs {lines}",
                )
            )
        seller.sku_lines.append((now, lines))
