"""A local emulator of the Back Market seller API: listings and batch tasks.

It models what the engine depends on, as Back Market's OpenAPI spec and the seller guides
describe it (see ``shared/reference/BACKMARKET.md``): one listing per SKU per seller serving
every country of the platform, global stock, per-country prices, the asynchronous batch
endpoint and its tasks, the rate limits, and the failures a client must survive (429, 5xx,
slow answers, dropped connections, WAF blocks, per-SKU rejections).

    Emulator          the model and the request handling, usable without a socket
    EmulatorServer    the same behind a real HTTP server (tests and demos use a loopback port)
    serve()           a blocking server for ``syncer emulator``

A finished batch task's ``result`` has Back Market's observed shape (``BACKMARKET.md``,
"Observed in production integrations"): ``{"product_success": {key: entry},
"product_errors": {key: entry}}``, two objects whose keys are the rows' SKUs
(``EmulatorConfig.result_key = "sku"``, the default; a row without a SKU is keyed by its row)
or their row numbers (``"row"``: "1" is the first data row), as the meaning of the real keys
is not known. A success entry is the listing the row created or updated: ``{"sku", "id"
(uuid), "listing_id" (int), "backmarket_id", "product_id", "publication_state", "status"}``
(``sku`` is the listing's, which is not the row's when a listing was reused); an error entry
``{"sku": str | None, "code": str, "message": str}``, the message joining each problem
("field: what"). A row in error changes nothing. A catalog that cannot be read at all fails
the task (``action_status`` 8, ``last_action_error`` says why). ``Faults.unreported_skus``
leaves chosen rows out of it. ``Emulator.batch_rows`` lists every batch row received, which
task results cannot show (a row sent again for an existing SKU is answered "updated").

Where production integrations saw Back Market do more than the spec says, a switch does it:
``Faults.reuse_listings`` (a new SKU for a product and grade the seller already has a listing
of goes onto that listing, which keeps its old SKU) and ``Faults.resolve_products`` (a product
of a model family, see ``add_product(family=)``, is resolved to the family's first product).
``EmulatorConfig(realistic=True)`` (``syncer emulator --realistic``) turns both on and keys
task results by row: the profile to rehearse against what sellers' integrations really see.

Batch CSV cells: an empty cell is read as a column the row does not give, so the listing
keeps that field's value (and a create lacks it). What Back Market does with an empty cell
is not known (clear the field, keep it, refuse the row): the engine never sends one, so this
reading is a choice of the emulator, not a fact to rely on. A row's ``state`` is not read as
the legacy grade code: as integrators use it, ``state=3`` creates (or puts) the listing as a
draft, offline whatever its quantity, and another value ends the draft. A created row
without a grade is GOOD, as integrators report Back Market does.

A write (single update or batch row) that leaves a listing's price outside the BackPricer
band, ``min_price <= price <= min_price x 1.08``, is refused with ``INVALID_BACKPRICER_RANGE``,
as integrators observe (the spec says nothing of it).

A single-listing update (``POST /ws/listings/{id}``) ignores a field its request body in the
spec lacks, as the real API does (production integrations send ``pub_state``), and lists it
in the exchange's ``ignored``; ``EmulatorConfig.strict_fields`` refuses it instead (400).

Endpoints under ``/_emulator/`` are not Back Market's and need no authentication:
``GET listings?token=``, ``GET|POST faults`` (JSON merged into ``Faults``), ``POST sell``
``{token, sku, quantity}``, ``POST products`` ``{ean | product_id, title}``, ``POST reset``.
New endpoints (orders, ...) are added with ``Emulator.add_route``.
"""

from __future__ import annotations

import argparse
import codecs
import copy
import csv
import hmac
import io
import json
import logging
import math
import random
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, NamedTuple, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from stdnum import ean as stdnum_ean

from syncer.core.vocabulary import GRADE_STATE, LOCALES, SHIPPERS, market_currency

__all__ = [
    "GRADES",
    "PLATFORMS",
    "SHIPPERS",
    "Call",
    "Emulator",
    "EmulatorConfig",
    "EmulatorServer",
    "Exchange",
    "Faults",
    "HttpError",
    "Reply",
    "Response",
    "product_id_for_ean",
    "serve",
]

log = logging.getLogger(__name__)

# Markets (Accept-Language values) of each platform and the currency of each market.
PLATFORMS: Final[dict[str, dict[str, str]]] = {
    platform: {locale: market_currency(locale) for locale in locales}
    for platform, locales in LOCALES.items()
}
# The spec: "Defaults to EUR for the EU marketplace, USD for the US one". AP has no default.
DEFAULT_CURRENCY: Final[dict[str, str]] = {"EU": "EUR", "US": "USD"}

# grade -> the deprecated integer ``state`` (ListingStateValue)
GRADES: Final[dict[str, int]] = GRADE_STATE
# A batch row's ``state`` is not the legacy grade code: integrators send 3 to create a
# listing as a draft (offline), and a row without a grade makes a GOOD listing.
DRAFT_STATE: Final = 3
DEFAULT_GRADE: Final = "GOOD"


USER_AGENT: Final = re.compile(r"^BM-[^-;]+-[^;]+;[^@\s]+@[^@\s]+$")
MAX_COMMENT: Final = 500
DEFAULT_PAGE_SIZE: Final = 10
MAX_PAGE_SIZE: Final = 50
EXCHANGE_LOG_SIZE: Final = 10_000
HOUR: Final = 3600.0
MAX_AMOUNT: Final = Decimal("1000000")
MAX_INT: Final = 2**31 - 1
CENT: Final = Decimal("0.01")
# The BackPricer keeps min_price <= price <= min_price x 1.08 (observed in production).
BACKPRICER_BAND: Final = Decimal("1.08")
BACKPRICER_ERROR: Final = "INVALID_BACKPRICER_RANGE"
_SLOTS: Final = ("1", "2", "3")
_SHIPPING_KEYS: Final = ("shipper", "shipper_display", "shipping_delay", "shipping_price")
# What the spec's request body of POST /ws/listings/{listingId} accepts.
SINGLE_UPDATE_FIELDS: Final[frozenset[str]] = frozenset(
    {"price", "currency", "comment", "warranty_delay", "quantity", "min_price"}
    | {f"{key}_{slot}" for key in _SHIPPING_KEYS for slot in _SLOTS}
)
# Batch CSV columns the emulator understands; any other column (product-creation columns of
# the back-office template: title, brand, image1...) is ignored, as the real endpoint does for
# products it already knows.
# A small category tree, in the spec's `CategoryTree` shape: the leaves' marketplace ids are
# what a product proposal's `category_id` names, their attributes what it must provide.
CATEGORY_TREE: Final[list[dict[str, Any]]] = [
    {"category_id": 1, "category_name": "Smartphones & tablets", "marketplace_category_id": -1,
     "is_leaf": False, "attributes": [], "childrens": [
         {"category_id": 2, "category_name": "Smartphones", "marketplace_category_id": 2,
          "is_leaf": True, "childrens": [], "attributes": [
              {"field": "color", "field_name": "Color", "type": 2, "allowed_values": "",
               "required": True},
              {"field": "storage", "field_name": "Storage", "type": 3,
               "allowed_values": "32 GB,64 GB,128 GB,256 GB,512 GB,1 TB", "required": True},
              {"field": "network", "field_name": "Network", "type": 3,
               "allowed_values": "Unlocked,Locked", "required": False}]},
         {"category_id": 3, "category_name": "Tablets", "marketplace_category_id": 3,
          "is_leaf": True, "childrens": [], "attributes": [
              {"field": "color", "field_name": "Color", "type": 2, "allowed_values": "",
               "required": True}]}]},
    {"category_id": 4, "category_name": "Computers", "marketplace_category_id": -4,
     "is_leaf": False, "attributes": [], "childrens": [
         {"category_id": 5, "category_name": "Laptops", "marketplace_category_id": 5,
          "is_leaf": True, "childrens": [], "attributes": [
              {"field": "processor", "field_name": "Processor", "type": 2,
               "allowed_values": "", "required": True},
              {"field": "ram", "field_name": "RAM", "type": 1, "allowed_values": "",
               "required": False}]}]},
]


def _leaves(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        if node["is_leaf"]:
            yield node
        yield from _leaves(node["childrens"])


CATEGORY_LEAVES: Final = {leaf["marketplace_category_id"]: leaf
                          for leaf in _leaves(CATEGORY_TREE)}
PRODUCT_COLUMNS: Final[frozenset[str]] = frozenset(
    {"title", "description", "brand", "price_new", "weight", "category_id", "width", "height",
     "depth"} | {f"image{n}" for n in range(1, 7)}
    | {a["field"] for leaf in CATEGORY_LEAVES.values() for a in leaf["attributes"]})
BATCH_COLUMNS: Final[frozenset[str]] = SINGLE_UPDATE_FIELDS | PRODUCT_COLUMNS | {
    "sku",
    "product_id",
    "backmarket_id",
    "ean",
    "grade",
    "state",
    "max_price",
    "deee",
}

# Product ids are uuid5 of the EAN in this namespace, so they are the same in every run.
PRODUCT_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://www.backmarket.fr/ws/products")
_TITLES: Final = (
    "iPhone 13 - 128 GB - Midnight - Unlocked",
    "Galaxy S21 5G - 128 GB - Phantom Gray - Unlocked",
    "iPad Air (2020) - 64 GB - Sky Blue - Wi-Fi",
    'MacBook Air 13" (2020) - M1 - 8 GB RAM - 256 GB SSD - QWERTY',
    "Pixel 7 - 128 GB - Obsidian - Unlocked",
    "Apple Watch Series 7 - 45 mm - GPS",
    "Nintendo Switch OLED - 64 GB - White",
    "iPhone 12 mini - 64 GB - Blue - Unlocked",
)
_FIRST_LISTING_ID: Final = 1
_FIRST_TASK_ID: Final = 1001
_FIRST_BACKMARKET_ID: Final = 50001


def product_id_for_ean(ean: str) -> str:
    """The product UUID the emulator gives the product of an EAN (stable across runs)."""
    return str(uuid.uuid5(PRODUCT_NAMESPACE, _normal_ean(ean)))


def _normal_ean(ean: str) -> str:
    code = ean.strip()
    # A UPC-A is the EAN-13 with a leading zero: both spellings name one product.
    return code.zfill(13) if len(code) == 12 else code


# --- configuration -------------------------------------------------------------------------


@dataclass
class Faults:
    """Failures injected into Back Market requests (never into ``/_emulator/`` ones)."""

    share_429: float = 0.0  # share of requests answered 429 (ErrorResponseV1 body)
    share_5xx: float = 0.0  # share answered 500/502/503 (502 and some 503 with an HTML body)
    # Share processed, then answered 502/504 as a gateway does when it gives up on an origin
    # that carried on: the change was applied though the answer is an error.
    share_5xx_after: float = 0.0
    share_slow: float = 0.0  # share delayed by slow_seconds before answering
    slow_seconds: float = 2.0
    # Share of connections closed without a response: half before processing, half after the
    # change was applied (the client cannot know which).
    share_drop: float = 0.0
    share_reject: float = 0.0  # share of per-SKU rejections (batch rows and single updates)
    # SKU (case-insensitive) -> error message: always rejected
    reject_skus: dict[str, str] = field(default_factory=dict)
    # Set: a refused single-listing update is answered {"error": {"code": reject_code, ...}}
    # instead of the bare string the spec documents, as a gateway in front of Back Market
    # may answer (outside the spec: not for contract-checked tests). Codes have no length
    # the client may rely on.
    reject_code: str | None = None
    # SKUs (case-insensitive) always rejected by a message that echoes the request's
    # Authorization header, as a proxy or WAF page quoting headers does: the token comes back
    echo_auth_skus: list[str] = field(default_factory=list)
    # EAN -> reason: a product proposal for it is rejected by Back Market's review
    reject_eans: dict[str, str] = field(default_factory=dict)
    # SKU (case-insensitive) -> "applied" or "skipped": its batch rows are left out of the
    # task result, after being applied or without being applied (the result does not report
    # every row: the client must read what it does not say from the listings)
    unreported_skus: dict[str, str] = field(default_factory=dict)
    waf_block: bool = False  # every request gets a Cloudflare-like 403 HTML page with cf-ray
    # Back Market down: every request gets the same 503 page (an outage answers the same way
    # for its whole length, unlike share_5xx's mix of 500, 502 and 503)
    outage: bool = False
    fail_tasks: bool = False  # batch tasks end failed (action_status 8, last_action_error)
    # A batch row creating a SKU for a product and grade the seller already has a listing of
    # updates that listing instead, which keeps its old SKU (as production integrators report)
    reuse_listings: bool = False
    # A product of a model family (add_product(family=)) is resolved to the family's first
    # product: listings are created for that one
    resolve_products: bool = False
    seed: int | None = None


UNREPORTED: Final = ("applied", "skipped")  # what happens to a row left out of a task result
RESULT_KEYS: Final = ("sku", "row")


def _copy_faults(faults: Faults) -> Faults:
    """Faults whose mappings can change without changing the configured ones."""
    return replace(faults, reject_skus=dict(faults.reject_skus),
                   echo_auth_skus=list(faults.echo_auth_skus),
                   reject_eans=dict(faults.reject_eans),
                   unreported_skus=dict(faults.unreported_skus))


@dataclass
class EmulatorConfig:
    # Accepted tokens; each one is a separate seller account (own listings, own tasks).
    tokens: tuple[str, ...] = ("emulator-token",)
    platform: str = "EU"  # "EU", "US" or "AP": selects the markets and their currencies
    task_delay: float = 0.2  # seconds before a batch task is processed
    requests_per_window: int = 200  # per token; beyond: 429, then blocked for block_seconds
    window_seconds: float = 10.0
    block_seconds: float = 10.0
    # Per token, SKU lines on listing updates in a sliding hour (a single update is 1 line, a
    # batch its data rows); 0 = unlimited.
    sku_lines_per_hour: int = 2000
    max_batch_lines: int = 15000
    warranty_min: int = 6  # the spec says 12 months, the marketplace guides say 6
    # Any well-formed EAN (valid check digit) or product UUID names a known product.
    auto_products: bool = True
    # Product proposals (a batch row with an unknown EAN and product columns, when
    # auto_products is off) stay pending this long before Back Market's team validates them.
    review_delay: float = 1.0
    faults: Faults = field(default_factory=Faults)
    state_path: str | None = None  # SQLite file keeping the model across restarts
    # A single-listing update with a field its request body in the spec lacks is answered
    # 400 instead of being ignored as the real API does (which accepted pub_state in
    # production): for our own tests, so that the client sending such a field is caught.
    # Ignored fields are listed in each exchange of the log either way (Exchange.ignored).
    strict_fields: bool = False
    # Injectable for tests: rate window, hourly budget and task delay all read this clock.
    clock: Callable[[], float] = field(default=time.monotonic)
    # What keys a task result's entries: "sku" or "row" (None: "row" if realistic, else "sku")
    result_key: str | None = None
    # Behave as production integrations observed: reuse_listings and resolve_products on,
    # task results keyed by row.
    realistic: bool = False

    def __post_init__(self) -> None:
        if self.result_key is None:
            self.result_key = "row" if self.realistic else "sku"
        if self.result_key not in RESULT_KEYS:
            raise ValueError(f"result_key must be one of {', '.join(RESULT_KEYS)}: "
                             f"{self.result_key!r}")
        if self.platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}: {self.platform!r}")
        if not self.tokens:
            raise ValueError("at least one token is needed")


# --- requests, replies, the log ------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One request handled and what was answered (the Authorization header is never kept)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    request: Any  # the JSON body, else its text, None when empty
    status: int | None  # None: the connection was dropped without a response
    response: Any  # the JSON body, else its text; None when dropped
    response_headers: dict[str, str]
    request_id: str
    dropped: str | None = None  # "before" or "after" the request was processed
    # The fault that answered instead of the endpoint: "429", "5xx" (nothing processed) or
    # "5xx-after" (processed, then answered with an error); None when the endpoint answered.
    fault: str | None = None
    at: float = 0.0  # the emulator's clock when the request was handled
    # Fields of the request body the endpoint ignored (not in its request body in the spec).
    ignored: tuple[str, ...] = ()


class BatchRow(NamedTuple):
    """One row of a batch CSV Back Market received (its POST processed)."""

    task_id: int
    token: str
    locale: str
    sku: str


@dataclass
class Response:
    """What the HTTP layer must do: wait ``delay`` seconds, then answer, or drop the line."""

    status: int
    headers: dict[str, str]
    body: bytes
    delay: float = 0.0
    drop: bool = False


@dataclass
class Reply:
    """A handler's answer: ``data`` is sent as JSON, unless ``text`` (HTML) is given."""

    status: int
    data: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class HttpError(Exception):
    """Raised by handlers to answer with ``reply`` at once."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def error_v1(status: int, code: str, message: str) -> Reply:
    """An ``ErrorResponseV1`` body; the request id is added when it is sent."""
    return Reply(status, {"error": {"code": code, "message": message}})


@dataclass
class Call:
    """One request as a handler sees it (headers with lower-case names)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    request_id: str
    token: str = ""
    locale: str = ""
    params: dict[str, str] = field(default_factory=dict)
    fault: str | None = None  # the injected fault that answered it (see Exchange.fault)
    ignored: tuple[str, ...] = ()  # body fields the endpoint ignored (see Exchange.ignored)
    # The spec documents a bare JSON string as the 400 body of this operation.
    string_errors: bool = False

    def bad_request(self, message: str) -> HttpError:
        if self.string_errors:
            return HttpError(Reply(400, message))
        return HttpError(error_v1(400, "invalid_request", message))

    def json_object(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body.decode("utf-8")) if self.body.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self.bad_request(f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise self.bad_request("request body must be a JSON object")
        return data


RouteHandler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: RouteHandler
    string_errors: bool = False
    admin: bool = False


# --- the model -----------------------------------------------------------------------------


@dataclass
class _Market:
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
class _Listing:
    id: str
    listing_id: int
    sku: str  # the spelling it was created with
    product_id: str
    grade: str
    quantity: int
    warranty_delay: int  # shown in a country that has none of its own yet
    markets: dict[str, _Market] = field(default_factory=dict)
    draft: bool = False  # made or put offline by a batch row's state=3: publication_state 3

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Listing:
        markets = {locale: _Market(**m) for locale, m in data["markets"].items()}
        return cls(**{**data, "markets": markets})


@dataclass
class _Product:
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
class _Task:
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
class _Seller:
    listings: dict[str, _Listing] = field(default_factory=dict)  # by SKU key (casefold)
    by_id: dict[str, str] = field(default_factory=dict)
    by_number: dict[int, str] = field(default_factory=dict)
    requests: deque[float] = field(default_factory=deque)
    blocked_until: float = -math.inf
    sku_lines: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, listing: _Listing) -> None:
        key = sku_key(listing.sku)
        self.listings[key] = listing
        self.by_id[listing.id] = key
        self.by_number[listing.listing_id] = key

    def by_sku(self, sku: str) -> _Listing | None:
        return self.listings.get(sku_key(sku))


def sku_key(sku: str) -> str:
    """Back Market matches SKUs case-insensitively."""
    return sku.strip().casefold()


@dataclass
class _Changes:
    """Validated values of one write; applied only when ``errors`` is empty."""

    grade: str | None = None
    quantity: int | None = None
    product: _Product | None = None
    market: dict[str, Any] = field(default_factory=dict)
    shippings: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None deletes
    errors: list[tuple[str | None, str]] = field(default_factory=list)
    proposed: _Product | None = None  # a product this row proposed or updated
    proposed_new: bool = False
    proposal_refused: bool = False  # the row proposed a product, and it was refused
    draft: bool | None = None  # a batch row's state: 3 makes a draft, another value ends it

    def error(self, name: str | None, message: str) -> None:
        self.errors.append((name, message))


class _CatalogError(Exception):
    """The batch catalog cannot be read at all: the task fails (action_status 8)."""


# --- persistence ---------------------------------------------------------------------------


class _Store:
    """The model in SQLite, one JSON document per row, written after each change."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS listings"
                " (token TEXT, sku_key TEXT, data TEXT, PRIMARY KEY (token, sku_key))"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS tasks (task_id INTEGER PRIMARY KEY, data TEXT)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS products (product_id TEXT PRIMARY KEY, data TEXT)"
            )

    def load(self) -> tuple[dict[str, Any], list[tuple[str, str]], list[str], list[str]]:
        meta = {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
        listings = [(t, d) for t, d in self._db.execute("SELECT token, data FROM listings")]
        tasks = [d for (d,) in self._db.execute("SELECT data FROM tasks ORDER BY task_id")]
        products = [d for (d,) in self._db.execute("SELECT data FROM products")]
        return meta, listings, tasks, products

    def save(
        self,
        meta: dict[str, Any],
        listings: list[tuple[str, str, str | None]],
        tasks: list[tuple[int, str]],
        products: list[tuple[str, str]],
    ) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in meta.items()],
            )
            for token, key, data in listings:
                if data is None:
                    self._db.execute(
                        "DELETE FROM listings WHERE token = ? AND sku_key = ?", (token, key)
                    )
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO listings VALUES (?, ?, ?)", (token, key, data)
                    )
            self._db.executemany("INSERT OR REPLACE INTO tasks VALUES (?, ?)", tasks)
            self._db.executemany("INSERT OR REPLACE INTO products VALUES (?, ?)", products)

    def clear(self) -> None:
        with self._db:
            for table in ("meta", "listings", "tasks", "products"):
                self._db.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        self._db.close()


# --- the emulator --------------------------------------------------------------------------


class Emulator:
    """The in-memory model of the seller API and its request handling, usable without a socket.

    Every method that reads or changes the model holds one lock: the HTTP server calls
    ``handle`` from many threads. Batch tasks are processed when the injected clock says they
    are due, at the next request or helper call (no background thread, so a fake clock in
    tests drives them deterministically).
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.faults = _copy_faults(config.faults)
        if config.realistic:
            self.faults.reuse_listings = self.faults.resolve_products = True
        self.exchanges: list[Exchange] = []
        # Every batch row Back Market received (its POST processed, whatever was answered), in
        # order: what shows a row sent twice, which the task results hide (a row sent again
        # for a SKU that exists is answered "updated").
        self.batch_rows: list[BatchRow] = []
        # Refusals the client caused (rate limit, hourly SKU budget) and injected 429 faults.
        self.stats: dict[str, int] = {"rate_limited": 0, "budget_refused": 0, "injected_429": 0}
        self._clock = config.clock
        self._lock = threading.RLock()
        self._rng = random.Random(self.faults.seed)
        self._routes: list[Route] = []
        self._markets = PLATFORMS[config.platform]
        self._store = _Store(config.state_path) if config.state_path else None
        self._init_model()
        self._install_routes()
        self.add_route("GET", r"/ws/category/tree", self._category_tree)
        self.add_route("GET", r"/ws/category/tree/(?P<category>-?\d+)", self._category_branch)
        self._install_market_routes()
        if self._store is not None:
            self._load()

    # -- public helpers (in-process access for tests and demos) ----------------------------

    def add_route(
        self,
        method: str,
        pattern: str,
        handler: RouteHandler,
        *,
        string_errors: bool = False,
        admin: bool = False,
    ) -> None:
        """Serve ``method`` on paths fully matching ``pattern`` (named groups -> call.params).

        Routes are tried in the order they were added. Back Market routes get an authenticated
        ``Call`` (``token``, ``locale`` set) and run under the model lock; ``admin`` routes
        (paths under ``/_emulator/``) need no authentication and are never faulted.
        """
        self._routes.append(
            Route(method.upper(), re.compile(pattern), handler, string_errors, admin)
        )

    def listings(self, token: str) -> list[dict[str, Any]]:
        """Every listing of that seller with every country's data, by listing_id."""
        with self._lock:
            self._catch_up()
            seller = self._seller(token)
            items = sorted(seller.listings.values(), key=lambda item: item.listing_id)
            return [self._dump(item) for item in items]

    def listing(self, token: str, sku: str, locale: str) -> dict[str, Any] | None:
        """The listing of that SKU as ``GET /ws/listings/{id}`` shows it in that country."""
        if locale not in self._markets:
            raise ValueError(f"{locale!r} is not a market of the {self.config.platform} platform")
        with self._lock:
            self._catch_up()
            found = self._seller(token).by_sku(sku)
            return None if found is None else self._public(found, locale)

    def sell(self, token: str, sku: str, quantity: int = 1) -> None:
        """An order on Back Market: the listing's global stock goes down by ``quantity``."""
        with self._lock:
            self._catch_up()
            found = self._seller(token).by_sku(sku)
            if found is None:
                raise KeyError(f"no listing with SKU {sku!r}")
            if quantity <= 0:
                raise ValueError("an order sells at least one unit")
            if quantity > found.quantity:
                raise ValueError(f"only {found.quantity} of {found.sku} in stock")
            found.quantity -= quantity
            self._touch(token, found)
            self._flush()

    def add_product(
        self, *, ean: str | None = None, product_id: str | None = None, title: str | None = None,
        family: str | None = None,
    ) -> dict[str, Any]:
        """Make a product known (needed when ``auto_products`` is off), of a model ``family``
        if given (``Faults.resolve_products`` resolves it to the family's first product)."""
        if ean is None and product_id is None:
            raise ValueError("a product needs an EAN or a product id")
        if ean is not None and not _valid_ean(ean):
            raise ValueError(f"{ean!r} is not a valid EAN")
        if family is not None and not isinstance(family, str):
            raise ValueError("a product's family is a name (a string)")
        with self._lock:
            pid = str(uuid.UUID(product_id)) if product_id else product_id_for_ean(cast(str, ean))
            product = self._products.get(pid) or self._new_product(
                pid, None if ean is None else _normal_ean(ean)
            )
            if title:
                product.title = title
            if family:
                product.family = family
            self._dirty_products.add(pid)
            self._flush()
            return asdict(product)

    _MODEL: Final = ("_sellers", "_tasks", "_pending", "_products", "_product_by_ean",
                     "_product_by_number", "_next_listing_id", "_next_task_id",
                     "_next_backmarket_id")

    def save_point(self) -> dict[str, Any]:
        """A copy of the listings, tasks and products, to go back to with ``restore`` (tests
        that replay one scene many times; orders are not included)."""
        with self._lock:
            return copy.deepcopy({name: getattr(self, name) for name in self._MODEL})

    def restore(self, point: dict[str, Any]) -> None:
        with self._lock:
            for name, value in copy.deepcopy(point).items():
                setattr(self, name, value)
            self.exchanges.clear()
            self.batch_rows.clear()
            self.stats = dict.fromkeys(self.stats, 0)

    def sku_lines_used(self, token: str) -> int:
        """SKU lines of listing updates this seller sent in the last hour (as limited)."""
        with self._lock:
            now = self._clock()
            return sum(n for at, n in self._seller(token).sku_lines if at > now - HOUR)

    def tasks(self, token: str) -> list[dict[str, Any]]:
        """Every batch task of that seller, processed or not: id, status, result."""
        with self._lock:
            self._catch_up()
            return [
                {"task_id": t.task_id, "action_status": t.action_status, "rows": t.rows,
                 "result": t.result or {}}
                for t in sorted(self._tasks.values(), key=lambda t: t.task_id)
                if t.token == token
            ]

    # -- orders (syncer.emulator.orders; kept in memory only, never in the --state file) --

    def create_order(
        self,
        token: str,
        lines: list[dict[str, Any]],
        *,
        country: str | None = None,
        state: int = 1,
        customer: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Place an order of ``lines`` ({sku, quantity, price?}) on the seller's listings, as
        ``GET /ws/orders/{id}`` shows it. A paid order (state 1) takes its stock as a sale."""
        from syncer.emulator.orders import order_book

        with self._lock:
            return order_book(self).create(token, lines, country=country, state=state,
                                           customer=customer)

    def settle_order(self, token: str, order_id: int, paid: bool = True) -> dict[str, Any]:
        """The payment of an order in state 0 or 10 succeeds (state 1) or fails (8)."""
        from syncer.emulator.orders import order_book

        with self._lock:
            return order_book(self).settle(token, order_id, paid)

    def order(self, token: str, order_id: int) -> dict[str, Any] | None:
        """The seller's order as ``GET /ws/orders/{id}`` shows it, or None."""
        from syncer.emulator.orders import order_book

        with self._lock:
            return order_book(self).order(token, order_id)

    def orders(self, token: str) -> list[dict[str, Any]]:
        """Every order of that seller, whatever its state, by order id."""
        from syncer.emulator.orders import order_book

        with self._lock:
            return order_book(self).orders(token)

    def _install_order_routes(self) -> None:
        from syncer.emulator.orders import install_order_routes

        install_order_routes(self)

    def _clear_orders(self) -> None:
        from syncer.emulator.orders import order_book

        order_book(self).clear()

    def _install_market_routes(self) -> None:
        from syncer.emulator.market import install_market_routes

        install_market_routes(self)

    def _clear_market(self) -> None:
        from syncer.emulator.market import market_book

        market_book(self).clear()

    def run_due_tasks(self) -> None:
        """Process the batch tasks whose delay has passed (requests do it too)."""
        with self._lock:
            self._catch_up()

    def _catch_up(self) -> None:
        self._run_due_tasks(self._clock())
        self._flush()

    def reset(self) -> None:
        """Forget every listing, task, product, limit and logged exchange; faults as configured."""
        with self._lock:
            self._init_model()
            self.exchanges.clear()
            self.batch_rows.clear()
            self.stats = dict.fromkeys(self.stats, 0)
            self.faults = _copy_faults(self.config.faults)
            self._rng = random.Random(self.faults.seed)
            if self._store is not None:
                self._store.clear()
            self._clear_orders()
            self._clear_market()

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    # -- request handling -------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> Response:
        """Answer one HTTP request (``target`` is the path with its query string)."""
        request_id = str(uuid.uuid4())
        split = urlsplit(target)
        call = Call(
            method=method.upper(),
            path=split.path.rstrip("/") or "/",
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in headers.items()},
            body=body,
            request_id=request_id,
        )
        reply: Reply | None
        delay, dropped = 0.0, None
        with self._lock:
            try:
                reply, delay, dropped = self._dispatch(call)
            except Exception:  # the server must answer whatever happens
                log.exception("emulator: unexpected error on %s %s", method, target)
                reply = error_v1(500, "internal_error", "Internal server error (emulator)")
            finally:
                try:
                    self._flush()
                except Exception:
                    log.exception("emulator: could not save the state")
            response = (
                Response(0, {}, b"", delay, drop=True)
                if reply is None
                else self._render(reply, request_id, delay)
            )
            if not call.path.startswith("/_emulator/"):
                self._record(call, reply, response, dropped)
        if dropped:
            response.drop = True
        return response

    def _dispatch(self, call: Call) -> tuple[Reply | None, float, str | None]:
        """The reply (None: drop the connection), the delay before it, where it was dropped."""
        now = self._clock()
        self._run_due_tasks(now)
        if call.path.startswith("/_emulator/"):
            return self._route(call, admin=True), 0.0, None
        if self.faults.waf_block:
            return _waf_page(), 0.0, None
        if self.faults.outage:
            return _cloudflare_page(503), 0.0, None
        if not USER_AGENT.match(call.headers.get("user-agent", "")):
            return _bot_challenge(), 0.0, None
        token = self._authenticate(call)
        if token is None:
            return self._unauthenticated(call), 0.0, None
        call.token = token
        seller = self._seller(token)
        limited = self._admit(seller, now)
        if limited is not None:
            return limited, 0.0, None
        delay = self.faults.slow_seconds if self._draw(self.faults.share_slow) else 0.0
        dropped = None
        if self._draw(self.faults.share_drop):
            dropped = "before" if self._rng.random() < 0.5 else "after"
            if dropped == "before":
                return None, delay, dropped
        if self._draw(self.faults.share_429):
            self.stats["injected_429"] += 1
            call.fault = "429"
            reply = error_v1(429, "too_many_requests", "Too many requests (emulated fault)")
            return reply, delay, dropped
        if self._draw(self.faults.share_5xx):
            call.fault = "5xx"
            return self._server_error(), delay, dropped
        reply = self._route(call, admin=False)
        if dropped is None and self._draw(self.faults.share_5xx_after):
            call.fault = "5xx-after"
            status = self._rng.choice((502, 504))
            return _cloudflare_page(status), delay, dropped
        return reply, delay, dropped

    def _route(self, call: Call, *, admin: bool) -> Reply:
        allowed: list[str] = []
        for route in self._routes:
            if route.admin != admin:
                continue
            match = route.pattern.fullmatch(call.path)
            if match is None:
                continue
            if route.method != call.method:
                allowed.append(route.method)
                continue
            call.params = {k: v for k, v in match.groupdict().items() if v is not None}
            call.string_errors = route.string_errors
            try:
                if not admin:
                    call.locale = self._locale(call)
                return route.handler(call)
            except HttpError as exc:
                return exc.reply
        if allowed:
            reply = error_v1(405, "method_not_allowed", f"Method {call.method} not allowed")
            reply.headers["Allow"] = ", ".join(sorted(set(allowed)))
            return reply
        return error_v1(404, "not_found", f"No endpoint at {call.path}")

    def _authenticate(self, call: Call) -> str | None:
        scheme, _, presented = call.headers.get("authorization", "").partition(" ")
        presented = presented.strip()
        if scheme.lower() != "basic" or not presented:
            return None
        for token in self.config.tokens:
            if hmac.compare_digest(presented.encode(), token.encode()):
                return token
        return None

    @staticmethod
    def _unauthenticated(call: Call) -> Reply:
        if "authorization" not in call.headers:
            message = "Authentication credentials were not provided."
        else:
            message = "Invalid token: expected 'Authorization: Basic <token>' with a seller token."
        return error_v1(401, "unauthenticated", message)

    def _locale(self, call: Call) -> str:
        raw = call.headers.get("accept-language")
        if raw is None or not raw.strip():
            return next(iter(self._markets))
        if raw.strip() not in self._markets:
            raise call.bad_request(
                f"Accept-Language {raw!r} is not a market of the {self.config.platform} platform;"
                f" expected one of: {' '.join(self._markets)}"
            )
        return raw.strip()

    def _admit(self, seller: _Seller, now: float) -> Reply | None:
        """The per-token traffic limit (Cloudflare's, per the spec's "Traffic limitation")."""
        if now < seller.blocked_until:
            self.stats["rate_limited"] += 1
            wait = seller.blocked_until - now
            message = f"Too many requests: blocked {wait:.1f}s more"
            return error_v1(429, "too_many_requests", message)
        window = self.config.window_seconds
        while seller.requests and seller.requests[0] <= now - window:
            seller.requests.popleft()
        if len(seller.requests) >= self.config.requests_per_window:
            self.stats["rate_limited"] += 1
            seller.blocked_until = now + self.config.block_seconds
            seller.requests.clear()
            return error_v1(
                429,
                "too_many_requests",
                f"Too many requests: more than {self.config.requests_per_window} in"
                f" {window:g}s; blocked for {self.config.block_seconds:g}s",
            )
        seller.requests.append(now)
        return None

    def _spend_sku_lines(self, seller: _Seller, lines: int, now: float) -> None:
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

    def _draw(self, share: float) -> bool:
        return share > 0 and self._rng.random() < share

    def _server_error(self) -> Reply:
        status = self._rng.choice((500, 502, 503))
        if status == 502 or (status == 503 and self._rng.random() < 0.5):
            return _cloudflare_page(status)
        return error_v1(status, "server_error", f"Server error {status} (emulated fault)")

    def _render(self, reply: Reply, request_id: str, delay: float) -> Response:
        headers = {"X-Request-Id": request_id, **reply.headers}
        if reply.text is not None:
            headers.setdefault("Content-Type", "text/html; charset=UTF-8")
            return Response(reply.status, headers, reply.text.encode("utf-8"), delay)
        data = reply.data
        if isinstance(data, dict) and ("error" in data or "errors" in data):
            data = {**data, "requestId": request_id}
        headers["Content-Type"] = "application/json"
        return Response(reply.status, headers, json.dumps(data).encode("utf-8"), delay)

    def _record(
        self, call: Call, reply: Reply | None, response: Response, dropped: str | None
    ) -> None:
        headers = {k: v for k, v in call.headers.items() if k != "authorization"}
        sent = reply is not None and dropped is None
        self.exchanges.append(
            Exchange(
                method=call.method,
                path=call.path,
                query=call.query,
                headers=headers,
                request=_decode(call.body),
                status=response.status if sent else None,
                response=_decode(response.body) if sent else None,
                response_headers=dict(response.headers) if sent else {},
                request_id=call.request_id,
                dropped=dropped,
                fault=call.fault,
                at=self._clock(),
                ignored=call.ignored,
            )
        )
        if len(self.exchanges) > EXCHANGE_LOG_SIZE:
            del self.exchanges[: len(self.exchanges) - EXCHANGE_LOG_SIZE]

    # -- routes -----------------------------------------------------------------------------

    def _install_routes(self) -> None:
        listing = r"/ws/listings/(?P<listing>[^/]+)"
        self.add_route("GET", r"/ws/listings", self._get_listings)
        self.add_route("POST", r"/ws/listings", self._post_listings, string_errors=True)
        self.add_route("GET", r"/ws/listings/detail", self._get_listing_detail)
        self.add_route("GET", listing, self._get_listing)
        self.add_route("POST", listing, self._post_listing, string_errors=True)
        self.add_route("GET", r"/ws/tasks/(?P<task>[^/]+)", self._get_task)
        self.add_route("GET", r"/_emulator/listings", self._admin_listings, admin=True)
        self.add_route("GET", r"/_emulator/faults", self._admin_get_faults, admin=True)
        self.add_route("POST", r"/_emulator/faults", self._admin_set_faults, admin=True)
        self.add_route("POST", r"/_emulator/sell", self._admin_sell, admin=True)
        self.add_route("POST", r"/_emulator/products", self._admin_add_product, admin=True)
        self.add_route("POST", r"/_emulator/reset", self._admin_reset, admin=True)
        self._install_order_routes()

    def _get_listings(self, call: Call) -> Reply:
        seller = self._seller(call.token)
        query = call.query
        page = query_int(call, "page", minimum=1) or 1
        # The spec names it page-size. page_size (as some integrators write it) is ignored,
        # as the real API does: it answered 10 results a page to page_size=100.
        # Larger pages are clamped, as Django REST framework's max_page_size does.
        size = min(query_int(call, "page-size", minimum=1) or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        state = query_int(call, "publication_state", minimum=0)
        if state is not None and state > 4:
            raise call.bad_request("publication_state must be one of 0, 1, 2, 3, 4")
        min_quantity = query_int(call, "min_quantity")
        max_quantity = query_int(call, "max_quantity")
        selected = [
            item
            for item in sorted(seller.listings.values(), key=lambda item: item.listing_id)
            if (state is None or self._publication_state(item, call.locale) == state)
            and (min_quantity is None or item.quantity >= min_quantity)
            and (max_quantity is None or item.quantity <= max_quantity)
        ]
        count = len(selected)
        start = (page - 1) * size
        last_page = max(1, math.ceil(count / size))

        def link(number: int) -> str:
            params = {**query, "page": str(number)}
            host = call.headers.get("host", "127.0.0.1")
            return f"http://{host}{call.path}?{urlencode(params)}"

        return Reply(
            200,
            {
                "count": count,
                "next": link(page + 1) if start + size < count else None,
                "previous": link(min(page - 1, last_page)) if page > 1 else None,
                "results": [self._public(item, call.locale) for item in selected[start:][:size]],
            },
        )

    def _get_listing(self, call: Call) -> Reply:
        found = self._find(call, call.params["listing"])
        return Reply(200, {**self._public(found, call.locale), "statuscode": 200})

    def _get_listing_detail(self, call: Call) -> Reply:
        keys = [k for k in ("sku", "id", "listing_id") if call.query.get(k, "").strip()]
        if not keys:
            raise call.bad_request("one of the query parameters sku, id, listing_id is needed")
        seller = self._seller(call.token)
        found: _Listing | None = None
        for key in keys:
            value = call.query[key].strip()
            if key == "sku":
                candidate = seller.by_sku(value)
            elif key == "id":
                candidate = self._find(call, value, as_uuid=True)
            else:
                if not re.fullmatch(r"\d+", value):
                    raise call.bad_request(f"listing_id must be an integer, got {value!r}")
                candidate = self._find(call, value)
            if candidate is None or (found is not None and candidate is not found):
                raise HttpError(error_v1(404, "not_found", "Listing not found"))
            found = candidate
        assert found is not None
        return Reply(200, {**self._public(found, call.locale), "statuscode": 200})

    def _find(self, call: Call, ident: str, *, as_uuid: bool = False) -> _Listing:
        """The caller's listing by UUID or (deprecated) integer id, else 404."""
        seller = self._seller(call.token)
        key: str | None
        if not as_uuid and re.fullmatch(r"\d+", ident):
            key = seller.by_number.get(int(ident))
        else:
            try:
                key = seller.by_id.get(str(uuid.UUID(ident)))
            except ValueError:
                raise call.bad_request(
                    f"listing id must be a UUID or an integer, got {ident!r}"
                ) from None
        if key is None:
            raise HttpError(error_v1(404, "not_found", f"Listing {ident} not found"))
        return seller.listings[key]

    def _post_listing(self, call: Call) -> Reply:
        """Real-time update of the fields given (one SKU line of the hourly budget)."""
        found = self._find(call, call.params["listing"])
        body = call.json_object()
        unknown = sorted(set(body) - SINGLE_UPDATE_FIELDS)
        if not self.config.strict_fields:
            # As the real API: a field it does not know is ignored (and logged here).
            call.ignored = tuple(unknown)
            body = {name: value for name, value in body.items() if name not in unknown}
        self._spend_sku_lines(self._seller(call.token), 1, self._clock())
        rejection = self._rejection(found.sku, call.headers.get("authorization", ""))
        if rejection:
            if self.faults.reject_code is None:
                raise call.bad_request(rejection)
            raise HttpError(error_v1(400, self.faults.reject_code, rejection))
        if unknown and self.config.strict_fields:
            raise call.bad_request(
                f"unknown field(s) {', '.join(unknown)}: this endpoint accepts"
                f" {', '.join(sorted(SINGLE_UPDATE_FIELDS))} (strict_fields)"
            )
        changes = self._parse_changes(body, call.locale, found.markets.get(call.locale))
        if changes.errors:
            raise call.bad_request("; ".join(message for _, message in changes.errors))
        messages = self._apply(found, call.locale, changes)
        self._touch(call.token, found)
        data = {**self._public(found, call.locale), "statuscode": 200}
        if any(name.startswith(("shipper", "shipping")) for name in body):
            data["shippings_response"] = messages
        return Reply(200, data)

    def _post_listings(self, call: Call) -> Reply:
        """The batch endpoint: a CSV catalog becomes a task processed after ``task_delay``."""
        body = call.json_object()
        for name in ("catalog", "quotechar", "delimiter", "encoding"):
            if body.get(name) is None:
                raise call.bad_request(f"parameter {name} not found")
            if not isinstance(body[name], str):
                raise call.bad_request(f"parameter {name} must be a string")
        catalog, quotechar, delimiter, encoding = (
            body["catalog"],
            body["quotechar"],
            body["delimiter"],
            body["encoding"],
        )
        if not catalog.strip():
            raise call.bad_request("parameter catalog is empty")
        for name, value in (("quotechar", quotechar), ("delimiter", delimiter)):
            if len(value) != 1:
                raise call.bad_request(f"parameter {name} must be one character, got {value!r}")
        if quotechar == delimiter:
            raise call.bad_request("parameters quotechar and delimiter must differ")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise call.bad_request(f"parameter encoding: unknown encoding {encoding!r}") from None
        rows = _count_rows(catalog, delimiter, quotechar)
        if rows > self.config.max_batch_lines:
            raise call.bad_request(
                f"catalog has {rows} lines; at most {self.config.max_batch_lines} are accepted"
            )
        now = self._clock()
        self._spend_sku_lines(self._seller(call.token), rows, now)
        task = _Task(
            task_id=self._next_task_id,
            token=call.token,
            locale=call.locale,
            catalog=catalog,
            delimiter=delimiter,
            quotechar=quotechar,
            encoding=encoding,
            rows=rows,
            created_at=now,
        )
        self._next_task_id += 1
        self._tasks[task.task_id] = task
        try:
            received = [cells.get("sku", "") for cells, _ in _read_catalog(task)]
        except _CatalogError:
            received = []  # the task fails as a whole: no row is processed
        self.batch_rows.extend(
            BatchRow(task.task_id, task.token, task.locale, sku) for sku in received)
        self._pending.append(task.task_id)
        self._dirty_tasks.add(task.task_id)
        return Reply(200, {"bodymessage": task.task_id, "statuscode": 200})

    def _get_task(self, call: Call) -> Reply:
        ident = call.params["task"]
        task = self._tasks.get(int(ident)) if re.fullmatch(r"\d+", ident) else None
        if task is None or task.token != call.token:
            raise HttpError(error_v1(404, "not_found", f"Task {ident} not found"))
        status = task.action_status
        if status == 0 and self._clock() - task.created_at >= self.config.task_delay / 2:
            status = 2  # in progress
        return Reply(
            200,
            {
                "task_id": task.task_id,
                "action_status": status,
                "last_action_error": task.last_action_error,
                "result": task.result if task.result is not None else {},
                "statuscode": 200,
            },
        )

    # -- admin routes (not Back Market's) ---------------------------------------------------

    def _admin_token(self, call: Call, given: object) -> str:
        token = given if isinstance(given, str) and given else self.config.tokens[0]
        if token not in self.config.tokens:
            raise HttpError(error_v1(404, "not_found", "unknown token"))
        return token

    def _admin_listings(self, call: Call) -> Reply:
        token = self._admin_token(call, call.query.get("token"))
        seller = self._seller(token)
        items = sorted(seller.listings.values(), key=lambda item: item.listing_id)
        return Reply(200, [self._dump(item) for item in items])

    def _admin_get_faults(self, call: Call) -> Reply:
        return Reply(200, asdict(self.faults))

    def _admin_set_faults(self, call: Call) -> Reply:
        body = call.json_object()
        known = {f.name for f in fields(Faults)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise call.bad_request(f"unknown fault(s): {', '.join(unknown)}")
        for name, value in body.items():
            if name in ("reject_skus", "reject_eans"):
                if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()
                ):
                    raise call.bad_request(f"{name} must map SKUs to messages")
            elif name == "reject_code":
                if value is not None and (not isinstance(value, str) or not value):
                    raise call.bad_request("reject_code must be a non-empty string or null")
            elif name == "echo_auth_skus":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise call.bad_request("echo_auth_skus must be a list of SKUs")
            elif name == "unreported_skus":
                if not isinstance(value, dict) or not all(
                    isinstance(k, str) and v in UNREPORTED for k, v in value.items()
                ):
                    raise call.bad_request(
                        f"unreported_skus must map SKUs to one of: {', '.join(UNREPORTED)}")
            elif name in ("waf_block", "outage", "fail_tasks", "reuse_listings",
                          "resolve_products"):
                if not isinstance(value, bool):
                    raise call.bad_request(f"{name} must be true or false")
            elif name == "seed":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise call.bad_request("seed must be an integer or null")
                self._rng = random.Random(value)
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise call.bad_request(f"{name} must be a non-negative number")
            elif name.startswith("share_") and value > 1:
                raise call.bad_request(f"{name} is a share: between 0 and 1")
            setattr(self.faults, name, value)
        return Reply(200, asdict(self.faults))

    def _admin_sell(self, call: Call) -> Reply:
        body = call.json_object()
        token = self._admin_token(call, body.get("token"))
        sku, quantity = body.get("sku"), body.get("quantity", 1)
        if not isinstance(sku, str) or isinstance(quantity, bool) or not isinstance(quantity, int):
            raise call.bad_request("expected {token, sku, quantity}")
        try:
            self.sell(token, sku, quantity)
        except KeyError as exc:
            raise HttpError(error_v1(404, "not_found", str(exc.args[0]))) from None
        except ValueError as exc:
            raise HttpError(error_v1(409, "conflict", str(exc))) from None
        found = self._seller(token).by_sku(sku)
        assert found is not None
        return Reply(200, self._dump(found))

    def _admin_add_product(self, call: Call) -> Reply:
        body = call.json_object()
        try:
            return Reply(
                200,
                self.add_product(
                    ean=body.get("ean"), product_id=body.get("product_id"), title=body.get("title"),
                    family=body.get("family"),
                ),
            )
        except ValueError as exc:
            raise call.bad_request(str(exc)) from None

    def _admin_reset(self, call: Call) -> Reply:
        self.reset()
        return Reply(200, {"reset": True})

    # -- the model --------------------------------------------------------------------------

    def _init_model(self) -> None:
        self._sellers: dict[str, _Seller] = {}
        self._tasks: dict[int, _Task] = {}
        self._pending: list[int] = []
        self._products: dict[str, _Product] = {}
        self._product_by_ean: dict[str, str] = {}
        self._product_by_number: dict[int, str] = {}
        self._next_listing_id = _FIRST_LISTING_ID
        self._next_task_id = _FIRST_TASK_ID
        self._next_backmarket_id = _FIRST_BACKMARKET_ID
        self._dirty_listings: set[tuple[str, str]] = set()
        self._dirty_tasks: set[int] = set()
        self._dirty_products: set[str] = set()

    def _seller(self, token: str) -> _Seller:
        seller = self._sellers.get(token)
        if seller is None:
            if token not in self.config.tokens:
                raise KeyError("unknown token")
            seller = self._sellers[token] = _Seller()
        return seller

    def _touch(self, token: str, listing: _Listing) -> None:
        self._dirty_listings.add((token, sku_key(listing.sku)))

    def _new_product(self, product_id: str, ean: str | None) -> _Product:
        digits = ean or str(uuid.UUID(product_id).int)
        product = _Product(
            product_id=product_id,
            backmarket_id=self._next_backmarket_id,
            title=_TITLES[int(digits[-6:]) % len(_TITLES)],
            ean=ean,
        )
        self._next_backmarket_id += 1
        self._index_product(product)
        self._dirty_products.add(product_id)
        return product

    def _forget_product(self, product: _Product) -> None:
        self._products.pop(product.product_id, None)
        self._product_by_number.pop(product.backmarket_id, None)
        if product.ean:
            self._product_by_ean.pop(product.ean, None)
        self._dirty_products.add(product.product_id)

    def _index_product(self, product: _Product) -> None:
        self._products[product.product_id] = product
        self._product_by_number[product.backmarket_id] = product.product_id
        if product.ean:
            self._product_by_ean[product.ean] = product.product_id

    def _publication_state(self, listing: _Listing, locale: str) -> int:
        market = listing.markets.get(locale)
        if market is None or market.price is None:
            return 0  # missing price
        product = self._products.get(listing.product_id)
        if product is not None and product.status == "pending":
            return 1  # pending validation of its product
        return 2 if listing.quantity > 0 and not listing.draft else 3

    def _public(self, listing: _Listing, locale: str) -> dict[str, Any]:
        """The listing in one country, in the spec's ``ListingPublic`` shape."""
        market = listing.markets.get(locale) or _Market()
        product = self._products[listing.product_id]
        return {
            "id": listing.id,
            "listing_id": listing.listing_id,
            "product_id": listing.product_id,
            "backmarket_id": product.backmarket_id,
            "title": product.title,
            "shippings": _shippings(market, locale),
            "state": GRADES[listing.grade],
            "grade": listing.grade,
            "quantity": listing.quantity,
            "currency": self._markets[locale],
            "sku": listing.sku,
            "publication_state": self._publication_state(listing, locale),
            "warranty_delay": (
                listing.warranty_delay if market.warranty_delay is None else market.warranty_delay
            ),
            "price": market.price or "0.00",
            "comment": market.comment,
            "min_price": market.min_price,
            # A number on the real API (the spec says a string): 199 or 199.9. Required and
            # not nullable: 0 stands for "no maximum set".
            "max_price": _json_number(market.max_price or "0"),
            # Deprecated (broken TouchID of an iPhone), still on every real listing.
            "snowden": False,
        }

    def _dump(self, listing: _Listing) -> dict[str, Any]:
        """The listing with every country's data (admin view, not a Back Market shape)."""
        product = self._products[listing.product_id]
        markets = {}
        for locale, market in listing.markets.items():
            data = asdict(market)
            data["shippings"] = _shippings(market, locale)
            data["publication_state"] = self._publication_state(listing, locale)
            markets[locale] = data
        return {
            "id": listing.id,
            "listing_id": listing.listing_id,
            "sku": listing.sku,
            "product_id": listing.product_id,
            "backmarket_id": product.backmarket_id,
            "ean": product.ean,
            "title": product.title,
            "grade": listing.grade,
            "state": GRADES[listing.grade],
            "quantity": listing.quantity,
            "warranty_delay": listing.warranty_delay,
            "draft": listing.draft,
            "markets": markets,
        }

    def _rejection(self, sku: str, authorization: str) -> str | None:
        """Why the marketplace refuses this SKU (configured or drawn), else None."""
        wanted = sku_key(sku)
        if any(sku_key(echoed) == wanted for echoed in self.faults.echo_auth_skus):
            return f"request refused by the gateway; request headers: Authorization: " \
                   f"{authorization}"
        for rejected, message in self.faults.reject_skus.items():
            if sku_key(rejected) == wanted:
                return message
        if self._draw(self.faults.share_reject):
            return f"listing {sku} rejected by the marketplace (emulated fault)"
        return None

    def _parse_changes(
        self, values: Mapping[str, object], locale: str, market: _Market | None
    ) -> _Changes:
        """Validate the fields of one write in one country (JSON values or CSV cells)."""
        changes = _Changes()
        if "quantity" in values:
            changes.quantity = _integer(values["quantity"], "quantity", changes, minimum=0)
        if "warranty_delay" in values:
            warranty = _integer(values["warranty_delay"], "warranty_delay", changes, minimum=0)
            if warranty is not None and warranty < self.config.warranty_min:
                changes.error(
                    "warranty_delay",
                    f"warranty_delay must be at least {self.config.warranty_min} months,"
                    f" got {warranty}",
                )
            elif warranty is not None:
                changes.market["warranty_delay"] = warranty
        if "price" in values:
            price = _money(values["price"], "price", changes, positive=True)
            if price is not None:
                changes.market["price"] = price
        for name in ("min_price", "max_price", "deee"):
            if name not in values:
                continue
            if values[name] is None and name == "min_price":
                changes.market[name] = None  # nullable: removes the BackPricer floor
                continue
            amount = _money(values[name], name, changes, positive=name != "deee")
            if amount is not None:
                changes.market[name] = amount
        if "comment" in values:
            comment = values["comment"]
            if comment is not None and not isinstance(comment, str):
                changes.error("comment", "comment must be a string or null")
            elif comment is not None and len(comment) > MAX_COMMENT:
                changes.error(
                    "comment",
                    f"comment must be at most {MAX_COMMENT} characters, got {len(comment)}",
                )
            else:
                changes.market["comment"] = comment
        self._check_backpricer_band(changes, market)
        self._parse_currency(values, locale, changes)
        for slot in _SLOTS:
            self._parse_shipping(values, slot, market, changes)
        if "grade" in values:
            grade = values["grade"]
            if isinstance(grade, str) and grade.strip().upper() in GRADES:
                changes.grade = grade.strip().upper()
            else:
                changes.error(
                    "grade", f"grade must be one of {', '.join(GRADES)}, got {grade!r}"
                )
        if "state" in values:
            # Not the legacy grade code: integrators send state=3 to keep a listing a draft.
            state = _integer(values["state"], "state", changes, minimum=0)
            if state is not None:
                changes.draft = state == DRAFT_STATE
        return changes

    @staticmethod
    def _check_backpricer_band(changes: _Changes, market: _Market | None) -> None:
        """A write of a price or a min_price that leaves min_price <= price <= min_price x
        1.08 is refused, as integrators observe Back Market does."""
        if "price" not in changes.market and "min_price" not in changes.market:
            return
        price = changes.market.get("price", market.price if market else None)
        floor = changes.market.get("min_price", market.min_price if market else None)
        if price is None or floor is None:
            return
        if not Decimal(floor) <= Decimal(price) <= Decimal(floor) * BACKPRICER_BAND:
            top = (Decimal(floor) * BACKPRICER_BAND).quantize(CENT, rounding=ROUND_FLOOR)
            changes.error("min_price", f"{BACKPRICER_ERROR}: price {price} is outside the"
                                       f" BackPricer range of min_price {floor}: {floor} to"
                                       f" {top}")

    def _parse_currency(self, values: Mapping[str, object], locale: str, changes: _Changes) -> None:
        expected = self._markets[locale]
        if "currency" in values:
            currency = values["currency"]
            if currency != expected:
                changes.error(
                    "currency",
                    f"currency {currency!r} does not match the market {locale}: prices there are"
                    f" in {expected}",
                )
                return
        elif "price" in values:
            default = DEFAULT_CURRENCY.get(self.config.platform)
            if default != expected:
                changes.error(
                    "currency",
                    f"currency is required with a price in {locale}: prices there are in"
                    f" {expected}",
                )
                return
        if "price" in values or "currency" in values:
            changes.market["currency"] = expected

    def _parse_shipping(
        self, values: Mapping[str, object], slot: str, market: _Market | None, changes: _Changes
    ) -> None:
        names = {key: f"{key}_{slot}" for key in _SHIPPING_KEYS}
        given = {key: values[name] for key, name in names.items() if name in values}
        if not given:
            return
        if "shipper" in given and given["shipper"] is None:
            changes.shippings[slot] = None  # the option is removed
            return
        option = dict(market.shippings.get(slot, {})) if market else {}
        errors = len(changes.errors)
        for key, value in given.items():
            name = f"{key}_{slot}"
            if key == "shipper":
                if not isinstance(value, str) or value not in SHIPPERS:
                    changes.error(name, f"{name} {value!r} is not a shipper known to Back Market")
                else:
                    option[key] = value
            elif key == "shipper_display":
                if value is not None and not isinstance(value, str):
                    changes.error(name, f"{name} must be a string or null")
                else:
                    option[key] = value or None
            elif key == "shipping_delay":
                option[key] = None if value is None else _integer(value, name, changes, minimum=0)
            else:
                option[key] = (
                    None if value is None else _money(value, name, changes, positive=False)
                )
        if len(changes.errors) > errors:
            return
        if any(option.get(key) is None for key in ("shipper", "shipping_price", "shipping_delay")):
            changes.error(
                f"shipper_{slot}",
                f"shipping option {slot} needs shipper_{slot}, shipping_price_{slot} and"
                f" shipping_delay_{slot}",
            )
            return
        changes.shippings[slot] = option

    def _apply(self, listing: _Listing, locale: str, changes: _Changes) -> list[str]:
        """Apply validated changes; returns the messages of ``shippings_response``."""
        if changes.grade is not None:
            listing.grade = changes.grade
        if changes.draft is not None:
            listing.draft = changes.draft
        if changes.quantity is not None:
            listing.quantity = changes.quantity
        messages: list[str] = []
        if not changes.market and not changes.shippings:
            return messages
        market = listing.markets.setdefault(locale, _Market())
        for name, value in changes.market.items():
            setattr(market, name, value)
        for slot, option in changes.shippings.items():
            if option is None:
                if market.shippings.pop(slot, None) is not None:
                    messages.append(f"Shipping method {slot} deleted")
                continue
            verb = "updated" if slot in market.shippings else "created"
            market.shippings[slot] = option
            messages.append(f"Shipping method {slot} ({option['shipper']}) {verb}")
        return messages

    def _resolve_product(self, cells: Mapping[str, str], changes: _Changes) -> _Product | None:
        """The product a batch row's listing is for: the one it names, or with
        ``resolve_products`` the first product of that one's model family."""
        product = self._named_product(cells, changes)
        if product is None or product.family is None or not self.faults.resolve_products:
            return product
        return min((p for p in self._products.values()
                    if p.family == product.family and p.status == "validated"),
                   key=lambda p: p.backmarket_id, default=product)

    def _named_product(self, cells: Mapping[str, str], changes: _Changes) -> _Product | None:
        """The product a batch row names: product_id wins over backmarket_id, then ean."""
        auto = self.config.auto_products
        if "product_id" in cells:
            try:
                pid = str(uuid.UUID(cells["product_id"].strip()))
            except ValueError:
                changes.error("product_id", f"product_id {cells['product_id']!r} is not a UUID")
                return None
            product = self._products.get(pid) or (self._new_product(pid, None) if auto else None)
            if product is None:
                changes.error("product_id", f"product {pid} not found")
            return product
        if "backmarket_id" in cells:
            number = _integer(cells["backmarket_id"], "backmarket_id", changes, minimum=1)
            if number is None:
                return None
            found = self._product_by_number.get(number)
            if found is None:
                changes.error("backmarket_id", f"product {number} not found")
                return None
            return self._products[found]
        if "ean" in cells:
            code = cells["ean"].strip()
            if not _valid_ean(code):
                changes.error("ean", f"ean {code!r} is not a valid EAN (length or check digit)")
                return None
            code = _normal_ean(code)
            known = self._product_by_ean.get(code)
            if known is not None:
                self._update_proposal(self._products[known], cells, changes)
                return self._products[known]
            if auto:
                return self._new_product(product_id_for_ean(code), code)
            if any(name in cells for name in PRODUCT_COLUMNS):
                return self._propose(code, cells, changes)
            changes.error(
                "ean", f"no product with ean {code}: add the product columns (title, "
                       "category_id, ...) to propose it")
        return None

    # -- product proposals ------------------------------------------------------------------

    def _check_proposal(self, ean: str, cells: Mapping[str, str], changes: _Changes) -> bool:
        """Back Market's checks of a product proposal: mandatory fields, a leaf category and
        its mandatory attributes, allowed values; then its review (``reject_eans``)."""
        before = len(changes.errors)
        for name in ("title", "description", "brand", "price_new", "weight", "category_id",
                     "image1"):
            if not cells.get(name):
                changes.error(name, f"{name} is required to propose a product")
        if len(cells.get("title", "")) > 200:
            changes.error("title", "title is longer than 200 characters")
        if len(cells.get("brand", "")) > 100:
            changes.error("brand", "brand is longer than 100 characters")
        if cells.get("price_new"):
            _money(cells["price_new"], "price_new", changes, positive=True)
        if cells.get("weight"):
            _integer(cells["weight"], "weight", changes, minimum=2)
        for number in range(1, 7):
            image = cells.get(f"image{number}", "")
            if image and not re.match(r"https?://", image):
                changes.error(f"image{number}", f"image{number} must be an http(s) URL")
        leaf = None
        if cells.get("category_id"):
            category = _integer(cells["category_id"], "category_id", changes, minimum=-MAX_INT)
            leaf = CATEGORY_LEAVES.get(category) if category is not None else None
            if category is not None and leaf is None:
                changes.error("category_id", f"category {category} is not a leaf category "
                                             "(see GET /ws/category/tree)")
        category_name = leaf["category_name"] if leaf else ""
        for attribute in leaf["attributes"] if leaf else []:
            value = cells.get(attribute["field"], "")
            allowed = [v.strip() for v in attribute["allowed_values"].split(",") if v.strip()]
            if attribute["required"] and not value:
                changes.error(attribute["field"], f"{attribute['field_name']} "
                              f"({attribute['field']}) is required in {category_name}")
            elif value and allowed and value not in allowed:
                changes.error(attribute["field"], f"{attribute['field']} must be one of "
                                                  f"{', '.join(allowed)}, got {value!r}")
        reason = self.faults.reject_eans.get(ean)
        if reason and len(changes.errors) == before:
            changes.error(None, f"product proposal rejected by Back Market: {reason}")
        return len(changes.errors) == before

    def _propose(self, ean: str, cells: Mapping[str, str], changes: _Changes) -> _Product | None:
        if not self._check_proposal(ean, cells, changes):
            changes.proposal_refused = True
            return None
        product = self._new_product(product_id_for_ean(ean), ean)
        product.status = "pending"
        product.proposed_at = self._clock()
        product.content = {k: v for k, v in cells.items() if k in PRODUCT_COLUMNS}
        product.title = cells.get("title") or product.title
        changes.proposed = product
        changes.proposed_new = True
        return product

    def _update_proposal(self, product: _Product, cells: Mapping[str, str],
                         changes: _Changes) -> None:
        """A pending proposal may be updated by its proposer; a validated product is not
        changed, and no error says so (as Back Market documents)."""
        if product.status != "pending" or not any(n in cells for n in PRODUCT_COLUMNS):
            return
        if self._check_proposal(product.ean or "", cells, changes):
            product.content = {k: v for k, v in cells.items() if k in PRODUCT_COLUMNS}
            product.title = cells.get("title") or product.title
            self._dirty_products.add(product.product_id)
        changes.proposed = product

    def _review(self, now: float) -> None:
        """Back Market's team validates pending proposals once ``review_delay`` has passed."""
        for product in self._products.values():
            if product.status == "pending" and product.proposed_at is not None \
                    and now >= product.proposed_at + self.config.review_delay:
                product.status = "validated"
                self._dirty_products.add(product.product_id)

    def _category_tree(self, call: Call) -> Reply:
        return Reply(200, CATEGORY_TREE)

    def _category_branch(self, call: Call) -> Reply:
        wanted = int(call.params["category"])

        def find(nodes: list[dict[str, Any]]) -> dict[str, Any] | None:
            for node in nodes:
                if node["category_id"] == wanted:
                    return node
                found = find(node["childrens"])
                if found is not None:
                    return found
            return None

        node = find(CATEGORY_TREE)
        if node is None:
            raise HttpError(error_v1(404, "not_found", f"category {wanted} not found"))
        return Reply(200, node)

    # -- batch tasks ------------------------------------------------------------------------

    def _run_due_tasks(self, now: float) -> None:
        self._review(now)
        self._run_tasks(now)

    def _run_tasks(self, now: float) -> None:
        while self._pending:
            task = self._tasks[self._pending[0]]
            if now - task.created_at < self.config.task_delay:
                return
            self._pending.pop(0)
            self._process_task(task)

    def _process_task(self, task: _Task) -> None:
        self._dirty_tasks.add(task.task_id)
        if task.token not in self.config.tokens:
            task.action_status, task.last_action_error = 8, "seller account not found"
            task.result = {}
            return
        if self.faults.fail_tasks:
            task.action_status, task.result = 8, {}
            task.last_action_error = "internal error while processing the file (emulated fault)"
            return
        try:
            rows = _read_catalog(task)
        except _CatalogError as exc:
            task.action_status, task.last_action_error, task.result = 8, str(exc), {}
            return
        seller = self._seller(task.token)
        unreported = {sku_key(sku): how for sku, how in self.faults.unreported_skus.items()}
        success: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for row, (cells, problem) in enumerate(rows, start=1):
            how = unreported.get(sku_key(cells.get("sku", "")))
            if how == "skipped":
                continue
            ok, entry = self._process_row(seller, task, cells, problem)
            if how is None:
                sku = cells.get("sku", "").strip()
                key = sku if self.config.result_key == "sku" and sku else str(row)
                (success if ok else errors)[key] = entry
        task.action_status = 9
        task.result = {"product_success": success, "product_errors": errors}

    def _process_row(
        self, seller: _Seller, task: _Task, cells: dict[str, str], problem: str | None
    ) -> tuple[bool, dict[str, Any]]:
        """One catalog row: create the listing, or update the one with this SKU (or, with
        ``reuse_listings``, the one of its product and grade). Returns whether it succeeded
        and its entry of the task result."""
        sku = cells.get("sku", "").strip()
        existing = seller.by_sku(sku) if sku else None

        def fail(errors: list[tuple[str | None, str]],
                 code: str = "invalid_field") -> tuple[bool, dict[str, Any]]:
            if changes is not None and changes.proposed_new and changes.proposed is not None:
                self._forget_product(changes.proposed)  # the row failed: nothing proposed
            message = "; ".join(f"{name}: {text}" if name else text for name, text in errors)
            return False, {"sku": sku or None, "code": code, "message": message}

        def success(listing: _Listing, status: str) -> tuple[bool, dict[str, Any]]:
            product = self._products[listing.product_id]
            return True, {"sku": listing.sku, "id": listing.id, "listing_id": listing.listing_id,
                          "backmarket_id": product.backmarket_id,
                          "product_id": listing.product_id,
                          "publication_state": self._publication_state(listing, task.locale),
                          "status": status}

        changes: _Changes | None = None

        if problem:
            return fail([(None, problem)], "invalid_row")
        if not sku:
            return fail([("sku", "sku is required")])
        rejection = self._rejection(sku, f"Basic {task.token}")
        if rejection:
            return fail([(None, rejection)], "listing_rejected")
        market = existing.markets.get(task.locale) if existing else None
        changes = self._parse_changes(cells, task.locale, market)
        product = self._resolve_product(cells, changes)
        if existing is None and product is not None and self.faults.reuse_listings:
            existing = self._same_slot(seller, product.product_id, changes.grade)
            if existing is not None:  # the row's values go onto it, against its own market
                changes = replace(self._parse_changes(cells, task.locale,
                                                      existing.markets.get(task.locale)),
                                  proposed=changes.proposed)
        if existing is not None:
            if product is not None and product.product_id != existing.product_id:
                changes.error(
                    "product_id",
                    f"listing {existing.sku} is for product {existing.product_id}; its product"
                    " cannot be changed",
                )
            if changes.errors:
                return fail(changes.errors)
            self._apply(existing, task.locale, changes)
            self._touch(task.token, existing)
            return success(existing, "updated")
        product_fields = ("product_id", "backmarket_id", "ean")
        if product is None and not changes.proposal_refused \
                and not any(name in product_fields for name, _ in changes.errors):
            changes.error("product_id", "product_id or ean is required to create a listing")
        if changes.grade is None and "grade" not in cells:
            changes.grade = DEFAULT_GRADE  # as integrators report Back Market does
        if changes.quantity is None and "quantity" not in cells:
            changes.error("quantity", "quantity is required to create a listing")
        if "price" not in cells:
            changes.error("price", f"price is required to create a listing in {task.locale}")
        if changes.errors or product is None or changes.grade is None or changes.quantity is None:
            return fail(changes.errors)
        listing = _Listing(
            id=str(uuid.uuid4()),
            listing_id=self._next_listing_id,
            sku=sku,
            product_id=product.product_id,
            grade=changes.grade,
            quantity=changes.quantity,
            warranty_delay=changes.market.get("warranty_delay", max(12, self.config.warranty_min)),
        )
        self._next_listing_id += 1
        self._apply(listing, task.locale, replace(changes, grade=None, quantity=None))
        listing.markets[task.locale].warranty_delay = listing.warranty_delay
        seller.add(listing)
        self._touch(task.token, listing)
        if changes.proposed is not None:
            changes.proposed.proposer = task.token
        return success(listing, "created")

    def _same_slot(self, seller: _Seller, product_id: str, grade: str | None) -> _Listing | None:
        """The seller's listing of this product and grade, which Back Market reuses."""
        if grade is None:
            return None
        return next((listing for listing in seller.listings.values()
                     if listing.product_id == product_id and listing.grade == grade), None)

    # -- persistence ------------------------------------------------------------------------

    def _load(self) -> None:
        assert self._store is not None
        meta, listings, tasks, products = self._store.load()
        self._next_listing_id = int(meta.get("next_listing_id", _FIRST_LISTING_ID))
        self._next_task_id = int(meta.get("next_task_id", _FIRST_TASK_ID))
        self._next_backmarket_id = int(meta.get("next_backmarket_id", _FIRST_BACKMARKET_ID))
        for data in products:
            self._index_product(_Product(**json.loads(data)))
        for token, data in listings:
            seller = self._sellers.setdefault(token, _Seller())
            seller.add(_Listing.from_json(json.loads(data)))
        now = self._clock()
        for data in tasks:
            task = _Task(**json.loads(data))
            self._tasks[task.task_id] = task
            if task.action_status == 0:
                task.created_at = now  # the old clock means nothing in this process
                self._pending.append(task.task_id)

    def _flush(self) -> None:
        dirty = self._dirty_listings or self._dirty_tasks or self._dirty_products
        if self._store is None or not dirty:
            self._dirty_listings.clear()
            self._dirty_tasks.clear()
            self._dirty_products.clear()
            return
        listings: list[tuple[str, str, str | None]] = []
        for token, key in sorted(self._dirty_listings):
            seller = self._sellers.get(token)
            found = seller.listings.get(key) if seller else None
            listings.append((token, key, None if found is None else json.dumps(asdict(found))))
        tasks = [(i, json.dumps(asdict(self._tasks[i]))) for i in sorted(self._dirty_tasks)]
        products = [(p, json.dumps(asdict(self._products[p]))) for p in self._dirty_products]
        meta = {
            "next_listing_id": self._next_listing_id,
            "next_task_id": self._next_task_id,
            "next_backmarket_id": self._next_backmarket_id,
        }
        self._dirty_listings.clear()
        self._dirty_tasks.clear()
        self._dirty_products.clear()
        self._store.save(meta, listings, tasks, products)


# --- helpers -------------------------------------------------------------------------------


def query_int(call: Call, name: str, *, minimum: int | None = None) -> int | None:
    """An integer query parameter, or a 400 in the spec's shape."""
    raw = call.query.get(name, "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"[+-]?\d+", raw):
        raise call.bad_request(f"{name} must be an integer, got {raw!r}")
    value = int(raw)
    if minimum is not None and value < minimum:
        raise call.bad_request(f"{name} must be at least {minimum}, got {value}")
    return value


def _integer(value: object, name: str, changes: _Changes, *, minimum: int) -> int | None:
    """An integer given as a JSON number or a string of digits (as the spec allows)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        number = int(value)
    if number is None:
        changes.error(name, f"{name} must be an integer, got {value!r}")
        return None
    if number < minimum:
        changes.error(name, f"{name} must not be below {minimum}, got {number}")
        return None
    if number > MAX_INT:
        changes.error(name, f"{name} is too large: {number}")
        return None
    return number


def _money(value: object, name: str, changes: _Changes, *, positive: bool) -> str | None:
    """An amount given as a string or a JSON number, canonical with two decimals."""
    amount: Decimal | None = None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            amount = None
    if amount is None or not amount.is_finite():
        changes.error(name, f"{name} must be an amount like '12.34', got {value!r}")
        return None
    if positive and amount <= 0:
        changes.error(name, f"{name} must be a positive amount, got {value!r}")
        return None
    if amount < 0:
        changes.error(name, f"{name} must not be negative, got {value!r}")
        return None
    if amount >= MAX_AMOUNT:
        changes.error(name, f"{name} is too large: {value!r}")
        return None
    if amount != amount.quantize(CENT):
        changes.error(name, f"{name} has more than 2 decimals: {value!r}")
        return None
    return f"{amount.quantize(CENT):f}"


def _json_number(amount: str) -> int | float:
    """An amount as the real API writes ``max_price``: an integer when whole, else a float
    (only on the wire: the model keeps the canonical string)."""
    value = Decimal(amount)
    return int(value) if value == value.to_integral_value() else float(value)


def _valid_ean(code: str) -> bool:
    code = code.strip()
    return len(code) in (8, 12, 13) and bool(stdnum_ean.is_valid(code))


def _shippings(market: _Market, locale: str) -> list[dict[str, Any]]:
    return [
        {
            "shipping_price": option["shipping_price"],
            "shipping_delay": option["shipping_delay"],
            "shipper": option["shipper"],
            "shipper_display": option.get("shipper_display") or option["shipper"],
            "country_code": locale,
        }
        for _, option in sorted(market.shippings.items())
    ]


def _records(catalog: str, delimiter: str, quotechar: str, *, strict: bool) -> Iterator[list[str]]:
    reader = csv.reader(
        io.StringIO(catalog, newline=""), delimiter=delimiter, quotechar=quotechar, strict=strict
    )
    for record in reader:
        if any(cell.strip() for cell in record):
            yield record


def _count_rows(catalog: str, delimiter: str, quotechar: str) -> int:
    """Data rows of a catalog (its header excluded), counted before it is processed."""
    try:
        return max(0, sum(1 for _ in _records(catalog, delimiter, quotechar, strict=False)) - 1)
    except csv.Error:
        return max(0, sum(1 for line in catalog.splitlines() if line.strip()) - 1)


def _read_catalog(task: _Task) -> list[tuple[dict[str, str], str | None]]:
    """The rows of a task's catalog as known, non-empty cells, each with its shape problem."""
    try:
        task.catalog.encode(task.encoding)
    except UnicodeEncodeError as exc:
        raise _CatalogError(
            f"the catalog cannot be encoded as {task.encoding}: {exc.reason} at character"
            f" {exc.start}"
        ) from None
    except LookupError:
        raise _CatalogError(f"unknown encoding {task.encoding!r}") from None
    records: list[list[str]] = []
    try:
        records.extend(_records(task.catalog, task.delimiter, task.quotechar, strict=True))
    except csv.Error as exc:
        raise _CatalogError(
            f"the catalog is not valid CSV after data row {len(records)}: {exc}"
        ) from None
    if not records:
        raise _CatalogError("the catalog is empty")
    header = [cell.replace("\ufeff", "").strip().lower() for cell in records[0]]
    if "sku" not in header:
        raise _CatalogError(
            f"column sku not found in the catalog header (delimiter {task.delimiter!r})"
        )
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        raise _CatalogError(f"column(s) repeated in the catalog header: {', '.join(repeated)}")
    rows: list[tuple[dict[str, str], str | None]] = []
    for record in records[1:]:
        cells = {
            name: value.strip()
            for name, value in zip(header, record, strict=False)
            if name in BATCH_COLUMNS and value.strip()
        }
        problem = None
        if len(record) != len(header):
            problem = f"the row has {len(record)} fields, the header {len(header)}"
        rows.append((cells, problem))
    return rows


def _decode(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace")


def _ray_id() -> str:
    return f"{uuid.uuid4().hex[:16]}-CDG"


def _waf_page() -> Reply:
    """Cloudflare's WAF block: an HTML page, the ray id in the ``cf-ray`` header."""
    ray = _ray_id()
    page = (
        "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>"
        "<body><h1>Sorry, you have been blocked</h1>"
        "<h2>You are unable to access backmarket.fr</h2>"
        f"<p>Cloudflare Ray ID: <strong>{ray.split('-')[0]}</strong></p></body></html>"
    )
    headers = {
        "cf-ray": ray,
        "cache-control": "max-age=15",
        "referrer-policy": "same-origin",
        "x-frame-options": "SAMEORIGIN",
    }
    return Reply(403, text=page, headers=headers)


def _bot_challenge() -> Reply:
    """Bot management's answer to a request without a proper User-Agent (from the spec)."""
    challenge = {
        "code": "bot-need-challenge",
        "message": "Forbidden",
        "challengePath": "/testchallengepage",
    }
    return Reply(403, {"errors": [challenge]}, headers={"cf-ray": _ray_id()})


def _cloudflare_page(status: int) -> Reply:
    title = {502: "Bad gateway", 503: "Service unavailable",
             504: "Gateway time-out"}.get(status, "Error")
    ray = _ray_id()
    page = (
        f"<!DOCTYPE html><html><head><title>backmarket.fr | {status}: {title}</title></head>"
        f"<body><h1>{title}</h1><p>Error code {status}</p>"
        f"<p>Cloudflare Ray ID: <strong>{ray.split('-')[0]}</strong></p></body></html>"
    )
    return Reply(status, text=page, headers={"cf-ray": ray})


# --- the HTTP server -----------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is what a server sees
        every day: not worth a traceback on stderr. Anything else still prints one."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Back Market's servers
    server_version = "BackMarketEmulator/1.0"
    timeout = 60  # idle keep-alive connections are closed
    # Headers and body are written apart: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK stall every response by about 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: ``Emulator.exchanges`` keeps what happened."""

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        emulator = cast(_HTTPServer, self.server).emulator
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        response = emulator.handle(self.command, self.path, dict(self.headers.items()), body)
        if response.delay > 0:
            time.sleep(response.delay)
        if response.drop:
            self.close_connection = True  # nothing was written: the client sees the line close
            return
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client gave up (e.g. a timeout on a slow answer)


class EmulatorServer:
    """The emulator behind a real HTTP server, serving from a daemon thread."""

    def __init__(
        self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.emulator = Emulator(config or EmulatorConfig())
        self.host = host
        self.port = port
        self.base_url = ""
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self.host, self.port), self.emulator)
        host, port = cast(tuple[str, int], self._httpd.server_address)[:2]
        self.port = port
        self.base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="backmarket-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.emulator.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(config: EmulatorConfig, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT (for ``syncer emulator``)."""
    server = EmulatorServer(config, host, port).start()
    print(f"Back Market emulator listening on {server.base_url}", flush=True)
    stopping = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stopping.set())
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        for number, handler in previous.items():
            if handler is not None:
                signal.signal(number, handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m syncer.emulator.server", description="A local Back Market seller API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--token", action="append", help="accepted token (repeatable)")
    parser.add_argument("--platform", choices=sorted(PLATFORMS), default="EU")
    parser.add_argument("--task-delay", type=float, default=2.0)
    parser.add_argument("--warranty-min", type=int, default=6)
    parser.add_argument("--state", help="SQLite file keeping the model across restarts")
    parser.add_argument("--realistic", action="store_true",
                        help="behave as production integrations observed (module docstring)")
    args = parser.parse_args(argv)
    config = EmulatorConfig(
        tokens=tuple(args.token or ("emulator-token",)),
        platform=args.platform,
        task_delay=args.task_delay,
        warranty_min=args.warranty_min,
        state_path=args.state,
        realistic=args.realistic,
    )
    serve(config, args.host, args.port)


if __name__ == "__main__":
    main()
