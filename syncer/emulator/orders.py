"""The emulator's orders: ``/ws/orders``, ``/ws/orders/{order_id}``, ``/ws/orderlines/{id}``.

Back Market's order and orderline state machine as its spec tells it (Tables 5 and 6 of
``GET /ws/orders``, ``UpdateOrder``): the reads and admin endpoints here (``OrderBook``), the
merchant's changes in ``syncer.emulator.order_updates``, the shapes in ``order_model``.

Orders live in memory only: the emulator's ``--state`` file keeps listings, products and
tasks, not orders, so a restart forgets them (they are test and demo data).

Order states: 0 new (payment check), 10 pending payment, 1 paid, 3 to ship, 8 not paid,
9 processed. Orderline states: 0 new, 9 on hold, 8 pending, 1 paid, 2 accepted, 3 shipped,
4 cancelled, 5 refunded before shipping, 6 refunded after, 7 not paid.

What a merchant may change with ``POST /ws/orders/{order_id}`` (``UpdateOrder``):
- ``new_state`` 2 (accept) or 4 (cancel) one line in state 1, named by ``sku``;
- ``new_state`` 5 (refund before shipping) one line in state 2, 6 (refund after) one in 3;
- ``new_state`` 3 ships the whole order once it is in state 3 (no line left in state 1, at
  least one accepted): ``tracking_number`` required, ``shipper`` (free text of at most 200
  characters: the spec's ``Shipper`` list names the known values, it is not a closed enum),
  ``tracking_url``, ``date_shipping``, and ``imei`` (a valid 15-digit IMEI) or
  ``serial_number`` only on an order of one line of quantity 1. Every accepted line becomes
  3 and the order 9. Identifiers, once set, cannot be corrected.
Anything else (another ``new_state``, a line or an order in another state) is refused with
HTTP 400 and an ``ErrorResponseV1`` body whose code is ``invalid_transition``.

The order's own state follows its lines: a line still in state 1 keeps it at 1; otherwise
an accepted line makes it 3 (to ship); when every line is final (shipped, cancelled,
refunded) it is 9. An order whose lines were all cancelled is thus processed (9) without a
shipment: no ``date_shipping``, no tracking.

``POST /ws/orders/{order_id}/invoice`` takes the seller's invoice as ``multipart/form-data``
(a part named ``invoice``, a PDF) for a paid order and sets its ``date_bill_provided``; a
new upload replaces the previous one. ``PATCH /ws/orderlines/{id}`` registers an ``imei``
and/or ``serial_number`` on a line (once: a different value is refused with a 422).

Where real integrations saw other shapes than the spec's, the emulator answers the real ones
(``reference/BACKMARKET.md``, "Observed in production integrations"): addresses in snake_case
(``first_name``, ``postal_code``, ``phone``...); ``tracking_number``, ``tracking_url`` and
``shipper`` empty strings until the order ships; ``date_bill_provided`` null until an invoice
is given; orderlines with ``condition``, ``shipper``, ``return_reason`` (0 when unset),
``return_message``, ``imei`` and ``serial_number`` (empty strings when unset).

``GET /ws/orders`` never lists orders in state 0 or 8 (as the spec says), sorts by
``order_id`` and pages like the listings (``page``, ``page-size`` up to 50; ``page_size`` is
ignored, as the real API ignores it and answers its default of 10). Its date filters
select orders created (``date_creation``) or last modified (``date_modification``) at or after
the given instant. ``Accept-Language`` does not filter orders: ``country_code`` does. Each
seller (token) sees only its own orders: another seller's order answers 404.

Admin endpoints (not Back Market's): ``POST /_emulator/orders`` ``{token, country_code,
state, lines: [{sku, quantity, price, shipping_price}], customer}`` places an order on
existing listings (a paid one takes its quantities from the listings' global stock, as a sale
does; ``customer`` keys in snake_case or the spec's camelCase), ``GET /_emulator/orders?token=``
lists them all, ``POST
/_emulator/orders/{order_id}/payment`` ``{paid: bool}`` settles a pending payment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from syncer.emulator.http import (
    Call,
    HttpError,
    Reply,
    Router,
    error_v1,
    page_params,
    paged,
    query_int,
)
from syncer.emulator.listings import Listings
from syncer.emulator.model import Shared, sku_key
from syncer.emulator.order_model import (
    CONDITION,
    COUNTRY_CODES,
    FIRST_LINE_ID,
    FIRST_ORDER_ID,
    HIDDEN_STATES,
    LINE_STATE_AT_CREATION,
    ORDER_STATES,
    Line,
    Order,
    amount,
    buyer_address,
    is_int,
    public_order,
    query_date,
)

__all__ = ["ORDER_PATH", "OrderBook"]

ORDER_PATH: Final = r"/ws/orders/(?P<order>[^/]+)"


class OrderBook:
    """The orders of every seller of one emulator. Route handlers run under the emulator's
    lock; the in-process helpers on ``Emulator`` take it before calling in."""

    def __init__(self, shared: Shared, listings: Listings) -> None:
        self.shared = shared
        self.listings = listings
        # Wall clock of the order dates; tests may replace it.
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.clear()

    def clear(self) -> None:
        self._orders: dict[int, Order] = {}
        self.line_orders: dict[int, int] = {}  # orderline id -> its order's id
        self._next_order_id = FIRST_ORDER_ID
        self._next_line_id = FIRST_LINE_ID

    # -- in-process helpers --------------------------------------------------------------

    def create(self, token: str, lines: Sequence[Mapping[str, Any]], *,
               country: str | None = None, state: int = 1,
               customer: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Place an order of ``lines`` (``sku``, ``quantity``, optional unit ``price`` and
        ``shipping_price``) on the seller's listings. ``state`` 1 is a paid order: its
        quantities leave the listings' global stock at once. 0 and 10 wait for a payment
        (``settle``); 8 is a failed payment."""
        markets = self.shared.markets
        locale = country or next(iter(markets))
        if locale not in markets:
            raise ValueError(f"{locale!r} is not a market of the {self.shared.config.platform} "
                             "platform")
        if state not in LINE_STATE_AT_CREATION:
            raise ValueError(f"a new order is in state 0, 10, 1 or 8, not {state!r}")
        if not lines:
            raise ValueError("an order has at least one line")
        now = self.now()
        built: list[Line] = []
        seen: set[str] = set()
        for spec in lines:
            sku = spec.get("sku")
            quantity = spec.get("quantity", 1)
            if not isinstance(sku, str) or not sku.strip():
                raise ValueError("each line needs a sku")
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                raise ValueError(f"line {sku}: quantity must be a whole number of at least 1")
            if sku_key(sku) in seen:
                raise ValueError(f"line {sku}: one line per SKU in an order")
            seen.add(sku_key(sku))
            listing = self.listings.listing(token, sku, locale)
            if listing is None:
                raise KeyError(f"no listing with SKU {sku!r}")
            price = amount(spec.get("price", listing["price"]), f"line {sku}: price")
            if Decimal(price) <= 0:
                raise ValueError(f"line {sku}: the listing has no price in {locale}; give one")
            built.append(Line(
                id=0, sku=listing["sku"], listing_id=int(listing["listing_id"]),
                product=str(listing["title"]), product_id=int(listing["backmarket_id"]),
                quantity=quantity, price=price,
                shipping_price=amount(spec.get("shipping_price", "0"), f"line {sku}: shipping"),
                currency=markets[locale], state=LINE_STATE_AT_CREATION[state],
                date_creation=now, condition=CONDITION.get(str(listing.get("grade")), 11)))
        order = Order(
            order_id=self._next_order_id, token=token, country_code=locale,
            currency=markets[locale], state=state, lines=built,
            customer=buyer_address(locale, customer), date_creation=now, date_modification=now)
        if state == 1:
            self._take_stock(order)
            order.date_payment = now
        self._next_order_id += 1
        for line in built:
            line.id = self._next_line_id
            self.line_orders[line.id] = order.order_id
            self._next_line_id += 1
        self._orders[order.order_id] = order
        return public_order(order)

    def settle(self, token: str, order_id: int, paid: bool) -> dict[str, Any]:
        """The payment of an order in state 0 or 10 succeeds (state 1) or fails (8)."""
        order = self.own(token, order_id)
        if order is None:
            raise KeyError(f"no order {order_id}")
        if order.state not in (0, 10):
            raise ValueError(f"order {order_id} is in state {order.state}: its payment is "
                             "already settled")
        if paid:
            self._take_stock(order)
            order.date_payment = self.now()
        new_line_state = 1 if paid else 7
        for line in order.lines:
            line.state = new_line_state
        order.state = 1 if paid else 8
        order.date_modification = self.now()
        return public_order(order)

    def order(self, token: str, order_id: int) -> dict[str, Any] | None:
        found = self.own(token, order_id)
        return None if found is None else public_order(found)

    def orders(self, token: str) -> list[dict[str, Any]]:
        return [public_order(o) for _, o in sorted(self._orders.items()) if o.token == token]

    def history(self, token: str, order_id: int) -> list[tuple[int | None, int]]:
        """The merchant's changes of an order, in order: (line id or None, new state)."""
        found = self.own(token, order_id)
        return [] if found is None else list(found.history)

    def own(self, token: str, order_id: int) -> Order | None:
        found = self._orders.get(order_id)
        return found if found is not None and found.token == token else None

    def _take_stock(self, order: Order) -> None:
        """A paid order is a sale: check every line first, then take the stock."""
        for line in order.lines:
            listing = self.listings.listing(order.token, line.sku, order.country_code)
            available = 0 if listing is None else int(listing["quantity"])
            if line.quantity > available:
                raise ValueError(f"only {available} of {line.sku} in stock")
        for line in order.lines:
            self.listings.sell(order.token, line.sku, line.quantity)

    # -- Back Market's endpoints ---------------------------------------------------------

    def get_orders(self, call: Call) -> Reply:
        query = call.query
        page, size = page_params(call)
        state = query_int(call, "state")
        if state is not None and state not in ORDER_STATES:
            raise call.bad_request(f"state must be one of {', '.join(map(str, ORDER_STATES))}")
        country = query.get("country_code", "").strip() or None
        if country is not None and country not in COUNTRY_CODES:
            raise call.bad_request(f"country_code must be one of {' '.join(COUNTRY_CODES)}")
        created = query_date(call, "date_creation")
        modified = query_date(call, "date_modification")
        selected = [
            order for _, order in sorted(self._orders.items())
            if order.token == call.token and order.state not in HIDDEN_STATES
            and (state is None or order.state == state)
            and (country is None or order.country_code == country)
            and (created is None or order.date_creation >= created)
            and (modified is None or order.date_modification >= modified)
        ]
        return paged(call, selected, page, size, public_order)

    def get_order(self, call: Call) -> Reply:
        return Reply(200, public_order(self.find(call)))

    def invoice(self, token: str, order_id: int) -> tuple[bytes, int]:
        """The last invoice uploaded for the order and how many uploads there were."""
        found = self.own(token, order_id)
        return (b"", 0) if found is None else (found.invoice, found.invoices)

    def find(self, call: Call) -> Order:
        ident = call.params["order"]
        if not re.fullmatch(r"\d+", ident):
            raise call.bad_request(f"order_id must be an integer, got {ident!r}")
        found = self.own(call.token, int(ident))
        if found is None:
            raise HttpError(error_v1(404, "not_found", f"Order {ident} not found"))
        return found

    # -- admin endpoints -----------------------------------------------------------------

    def admin_list(self, call: Call) -> Reply:
        token = self.shared.admin_token(call.query.get("token"))
        return Reply(200, self.orders(token))

    def admin_create(self, call: Call) -> Reply:
        body = call.json_object()
        token = self.shared.admin_token(body.get("token"))
        lines = body.get("lines")
        state = body.get("state", 1)
        customer = body.get("customer")
        if not isinstance(lines, list) or not all(isinstance(x, dict) for x in lines) \
                or not is_int(state) or not (customer is None or isinstance(customer, dict)):
            raise call.bad_request("expected {token, country_code, state, lines: [{sku, "
                                   "quantity, price}], customer}")
        try:
            return Reply(200, self.create(token, lines, country=body.get("country_code"),
                                          state=state, customer=customer))
        except KeyError as exc:
            raise HttpError(error_v1(404, "not_found", str(exc.args[0]))) from None
        except ValueError as exc:
            raise HttpError(error_v1(409, "conflict", str(exc))) from None

    def admin_payment(self, call: Call) -> Reply:
        body = call.json_object()
        token = self.shared.admin_token(body.get("token"))
        ident = call.params["order"]
        paid = body.get("paid", True)
        if not ident.isdigit() or not isinstance(paid, bool):
            raise call.bad_request("expected /_emulator/orders/{order_id}/payment {paid: bool}")
        try:
            return Reply(200, self.settle(token, int(ident), paid))
        except KeyError as exc:
            raise HttpError(error_v1(404, "not_found", str(exc.args[0]))) from None
        except ValueError as exc:
            raise HttpError(error_v1(409, "conflict", str(exc))) from None


    def install(self, router: Router) -> None:
        """Serve the order reads and the admin endpoints (the merchant's changes are
        ``syncer.emulator.order_updates``')."""
        router.add("GET", r"/ws/orders", self.get_orders)
        router.add("GET", ORDER_PATH, self.get_order)
        router.add("GET", r"/_emulator/orders", self.admin_list, admin=True)
        router.add("POST", r"/_emulator/orders", self.admin_create, admin=True)
        router.add("POST", r"/_emulator/orders/(?P<order>[^/]+)/payment", self.admin_payment,
                   admin=True)
