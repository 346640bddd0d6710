"""``Emulator``: a local emulator of the Back Market seller API, usable without a socket.

It models what the engine depends on, as Back Market's OpenAPI spec and the seller guides
describe it (see ``shared/reference/BACKMARKET.md``): one listing per SKU per seller serving
every country of the platform, global stock, per-country prices, the asynchronous batch
endpoint and its tasks, orders, the BackBox, the rate limits, and the failures a client must
survive (429, 5xx, slow answers, dropped connections, WAF blocks, per-SKU rejections).

The facade composes the parts, each owning one concern and all sharing one ``Shared`` state
(model, faults, clock, logs) and its one lock: the gateway (Cloudflare, authentication,
faults), listings, batch tasks, products, orders, the competitive market, and the admin
endpoints; the ``--state`` file saves the model after each request or helper call. New
endpoints (tests' own) are added with ``Emulator.add_route``.
"""

from __future__ import annotations

import copy
import logging
import random
import uuid
from collections.abc import Mapping
from typing import Any

from syncer.emulator.admin import Admin
from syncer.emulator.config import EmulatorConfig, Faults, copy_faults
from syncer.emulator.gateway import Gateway
from syncer.emulator.http import (
    EXCHANGE_LOG_SIZE,
    Call,
    Reply,
    Response,
    RouteHandler,
    Router,
    error_v1,
    exchange,
    render,
)
from syncer.emulator.listings import Listings
from syncer.emulator.market import MarketBook
from syncer.emulator.model import HOUR, Model, Shared
from syncer.emulator.order_updates import OrderUpdates
from syncer.emulator.orders import OrderBook
from syncer.emulator.products import Products
from syncer.emulator.store import Store
from syncer.emulator.tasks import Tasks

__all__ = ["Emulator"]

log = logging.getLogger(__name__)


class Emulator:
    """The in-memory model of the seller API and its request handling, usable without a socket.

    Every method that reads or changes the model holds one lock: the HTTP server calls
    ``handle`` from many threads. Batch tasks are processed when the injected clock says they
    are due, at the next request or helper call (no background thread, so a fake clock in
    tests drives them deterministically).
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.shared = shared = Shared(config)
        self._lock = shared.lock
        # Never replaced (cleared in place): the emulator's logs, as the parts write them.
        self.exchanges = shared.exchanges
        self.batch_rows = shared.batch_rows
        self._store = Store(config.state_path) if config.state_path else None
        self._products = Products(shared)
        self._listings = Listings(shared)
        self._tasks = Tasks(shared, self._listings, self._products)
        self.order_book = OrderBook(shared, self._listings)
        self.market_book = MarketBook(shared, self._listings)
        self._router = Router()
        self._gateway = Gateway(shared, self._router, self._tasks.run_due)
        # Routes are tried in this order (GET /ws/listings/detail before /ws/listings/{id}).
        self._listings.install(self._router)
        self._tasks.install(self._router)
        Admin(shared, self._listings, self._products, self.reset).install(self._router)
        self.order_book.install(self._router)
        OrderUpdates(self.order_book).install(self._router)
        self._products.install(self._router)
        self.market_book.install(self._router)
        if self._store is not None:
            self._store.load_into(shared)

    @property
    def faults(self) -> Faults:
        return self.shared.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.shared.faults = faults

    @property
    def stats(self) -> dict[str, int]:
        """Refusals the client caused (rate limit, hourly SKU budget) and injected 429s."""
        return self.shared.stats

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
        self._router.add(method, pattern, handler, string_errors=string_errors, admin=admin)

    def listings(self, token: str) -> list[dict[str, Any]]:
        """Every listing of that seller with every country's data, by listing_id."""
        with self._lock:
            self._catch_up()
            return self._listings.dumps(token)

    def listing(self, token: str, sku: str, locale: str) -> dict[str, Any] | None:
        """The listing of that SKU as ``GET /ws/listings/{id}`` shows it in that country."""
        with self._lock:
            self._catch_up()
            return self._listings.listing(token, sku, locale)

    def sell(self, token: str, sku: str, quantity: int = 1) -> None:
        """An order on Back Market: the listing's global stock goes down by ``quantity``."""
        with self._lock:
            self._catch_up()
            self._listings.sell(token, sku, quantity)
            self._flush()

    def add_product(
        self, *, ean: str | None = None, product_id: str | None = None, title: str | None = None,
        family: str | None = None,
    ) -> dict[str, Any]:
        """Make a product known (needed when ``auto_products`` is off), of a model ``family``
        if given (``Faults.resolve_products`` resolves it to the family's first product)."""
        with self._lock:
            product = self._products.add_product(ean=ean, product_id=product_id, title=title,
                                                family=family)
            self._flush()
            return product

    def save_point(self) -> Model:
        """A copy of the listings, tasks and products, to go back to with ``restore`` (tests
        that replay one scene many times; orders are not included)."""
        with self._lock:
            return copy.deepcopy(self.shared.model)

    def restore(self, point: Model) -> None:
        with self._lock:
            self.shared.model = copy.deepcopy(point)
            self.shared.forget_traffic()

    def sku_lines_used(self, token: str) -> int:
        """SKU lines of listing updates this seller sent in the last hour (as limited)."""
        with self._lock:
            now = self.shared.clock()
            return sum(n for at, n in self.shared.seller(token).sku_lines if at > now - HOUR)

    def tasks(self, token: str) -> list[dict[str, Any]]:
        """Every batch task of that seller, processed or not: id, status, result."""
        with self._lock:
            self._catch_up()
            return self._tasks.tasks(token)

    # -- orders (kept in memory only, never in the --state file) ----------------------------

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
        with self._lock:
            self._catch_up()
            try:
                return self.order_book.create(token, lines, country=country, state=state,
                                              customer=customer)
            finally:
                self._flush()

    def settle_order(self, token: str, order_id: int, paid: bool = True) -> dict[str, Any]:
        """The payment of an order in state 0 or 10 succeeds (state 1) or fails (8)."""
        with self._lock:
            self._catch_up()
            try:
                return self.order_book.settle(token, order_id, paid)
            finally:
                self._flush()

    def order(self, token: str, order_id: int) -> dict[str, Any] | None:
        """The seller's order as ``GET /ws/orders/{id}`` shows it, or None."""
        with self._lock:
            return self.order_book.order(token, order_id)

    def orders(self, token: str) -> list[dict[str, Any]]:
        """Every order of that seller, whatever its state, by order id."""
        with self._lock:
            return self.order_book.orders(token)

    def run_due_tasks(self) -> None:
        """Process the batch tasks whose delay has passed (requests do it too)."""
        with self._lock:
            self._catch_up()

    def reset(self) -> None:
        """Forget every listing, task, product, limit and logged exchange; faults as configured."""
        with self._lock:
            shared = self.shared
            shared.model = Model()
            shared.dirty.clear()
            shared.forget_traffic()
            shared.faults = copy_faults(self.config.faults)
            shared.rng = random.Random(shared.faults.seed)
            if self._store is not None:
                self._store.clear()
            self.order_book.clear()
            self.market_book.clear()

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
        call = Call.parse(method, target, headers, body, request_id)
        reply: Reply | None
        delay, dropped = 0.0, None
        with self._lock:
            try:
                reply, delay, dropped = self._gateway.dispatch(call)
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
                else render(reply, request_id, delay)
            )
            if not call.path.startswith("/_emulator/"):
                self._record(call, reply, response, dropped)
        if dropped:
            response.drop = True
        return response

    def _record(
        self, call: Call, reply: Reply | None, response: Response, dropped: str | None
    ) -> None:
        self.exchanges.append(exchange(call, reply, response, dropped, self.shared.clock()))
        if len(self.exchanges) > EXCHANGE_LOG_SIZE:
            del self.exchanges[: len(self.exchanges) - EXCHANGE_LOG_SIZE]

    def _catch_up(self) -> None:
        self._tasks.run_due(self.shared.clock())
        self._flush()

    def _flush(self) -> None:
        if self._store is None:
            self.shared.dirty.clear()
        else:
            self._store.flush(self.shared)
