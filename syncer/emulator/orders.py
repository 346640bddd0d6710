"""The emulator's orders: ``/ws/orders``, ``/ws/orders/{order_id}``, ``/ws/orderlines/{id}``.

Back Market's order and orderline state machine as its spec tells it (Tables 5 and 6 of
``GET /ws/orders``, ``UpdateOrder``), installed on an ``Emulator`` with ``add_route``.

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
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Final
from urllib.parse import urlencode

from stdnum import imei as stdnum_imei

from syncer.core.vocabulary import (
    IMEI_DIGITS,
    MAX_SERIAL,
    MAX_SHIPPER,
    MAX_TRACKING_NUMBER,
    MAX_TRACKING_URL,
)
from syncer.emulator.server import (
    CENT,
    PLATFORMS,
    Call,
    Emulator,
    HttpError,
    Reply,
    error_v1,
    query_int,
    sku_key,
)

__all__ = ["LINE_STATES", "ORDER_STATES", "OrderBook", "install_order_routes", "order_book"]

ORDER_STATES: Final = (0, 10, 1, 3, 8, 9)
LINE_STATES: Final = (0, 9, 8, 1, 2, 3, 4, 5, 6, 7)
COUNTRY_CODES: Final = (
    "fr-fr", "fr-be", "es-es", "de-de", "de-at", "it-it", "ja-jp", "en-au", "en-gb", "en-us",
    "nl-nl", "pt-pt", "en-ie", "el-gr", "sk-sk", "sv-se",
)
RETURN_REASONS: Final = (0, 1, 11, 12, 13, 21, 22, 23, 24, 25)
UPDATE_FIELDS: Final = frozenset({
    "order_id", "id", "new_state", "sku", "imei", "serial_number", "tracking_number",
    "tracking_url", "vat_type", "date_shipping", "shipper", "return_reason", "return_message",
})
HIDDEN_STATES: Final = frozenset({0, 8})  # "neither in state=0 nor state=8"
# new_state -> the line state it may come from (Table 6), for the one-line transitions.
LINE_MOVES: Final = {2: 1, 4: 1, 5: 2, 6: 3}
FINAL_LINE_STATES: Final = frozenset({3, 4, 5, 6, 7})
# The line state of a new order in each order state a buyer can leave it in.
LINE_STATE_AT_CREATION: Final = {0: 0, 10: 8, 1: 1, 8: 7}
DEFAULT_PAGE_SIZE: Final = 10
MAX_PAGE_SIZE: Final = 50
MAX_RETURN_MESSAGE: Final = 500
DISPATCH_DELAY: Final = timedelta(days=2)
# An orderline's ``condition`` by the listing's grade: real orders carry 0-4 and 10-12; the
# spec's ``ProductCondition`` lists 9-12, so the emulator keeps to the values both allow.
CONDITION: Final = {"PREMIUM": 9, "EXCELLENT": 10, "VERY_GOOD": 10, "GOOD": 11, "FAIR": 12,
                    "STALLONE": 12}
# The address of a real order (snake_case, not the spec's camelCase ``Address``).
ADDRESS_FIELDS: Final = ("first_name", "last_name", "street", "street2", "postal_code", "city",
                         "country", "phone", "email", "company", "customer_id_number")
# The spec's camelCase names, accepted from the admin endpoint's ``customer``.
CAMEL_ADDRESS: Final = {"firstName": "first_name", "lastName": "last_name",
                        "postalCode": "postal_code", "phoneNumber": "phone"}
MAX_INVOICE_BYTES: Final = 10 * 1024 * 1024
_FIRST_ORDER_ID: Final = 100_001
_FIRST_LINE_ID: Final = 500_001

_books: weakref.WeakKeyDictionary[Emulator, OrderBook] = weakref.WeakKeyDictionary()


def order_book(emulator: Emulator) -> OrderBook:
    """The order book of an emulator (made on first use)."""
    book = _books.get(emulator)
    if book is None:
        book = _books[emulator] = OrderBook(emulator)
    return book


def install_order_routes(emulator: Emulator) -> OrderBook:
    """Serve the order endpoints (Back Market's and the admin ones) on ``emulator``."""
    book = order_book(emulator)
    order = r"/ws/orders/(?P<order>[^/]+)"
    emulator.add_route("GET", r"/ws/orders", book.get_orders)
    emulator.add_route("GET", order, book.get_order)
    emulator.add_route("POST", order, book.post_order)
    emulator.add_route("POST", order + "/invoice", book.post_invoice)
    emulator.add_route("PATCH", r"/ws/orderlines/(?P<line>[^/]+)", book.patch_orderline)
    emulator.add_route("GET", r"/_emulator/orders", book.admin_list, admin=True)
    emulator.add_route("POST", r"/_emulator/orders", book.admin_create, admin=True)
    emulator.add_route("POST", r"/_emulator/orders/(?P<order>[^/]+)/payment",
                       book.admin_payment, admin=True)
    return book


# --- the model -------------------------------------------------------------------------------


@dataclass
class _Line:
    id: int
    sku: str
    listing_id: int
    product: str
    product_id: int
    quantity: int
    price: str  # unit price, two decimals
    shipping_price: str
    currency: str
    state: int
    date_creation: datetime
    condition: int = 11
    imei: str = ""
    serial_number: str = ""
    shipper: str = ""
    return_reason: int = 0
    return_message: str = ""


@dataclass
class _Order:
    order_id: int
    token: str
    country_code: str
    currency: str
    state: int
    lines: list[_Line]
    customer: dict[str, str]
    date_creation: datetime
    date_modification: datetime
    date_payment: datetime | None = None
    date_shipping: datetime | None = None
    tracking_number: str = ""
    tracking_url: str = ""
    shipper: str = ""
    date_bill_provided: datetime | None = None
    invoice: bytes = b""  # the last invoice uploaded
    invoices: int = 0  # how many uploads it took (tests count what was sent)
    history: list[tuple[int | None, int]] = field(default_factory=list)  # (line id, new state)


class OrderBook:
    """The orders of every seller of one emulator. Route handlers run under the emulator's
    lock; the in-process helpers on ``Emulator`` take it before calling in."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        # Wall clock of the order dates; tests may replace it.
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.clear()

    def clear(self) -> None:
        self._orders: dict[int, _Order] = {}
        self._line_order: dict[int, int] = {}
        self._next_order_id = _FIRST_ORDER_ID
        self._next_line_id = _FIRST_LINE_ID

    # -- in-process helpers --------------------------------------------------------------

    def create(self, token: str, lines: Sequence[Mapping[str, Any]], *,
               country: str | None = None, state: int = 1,
               customer: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Place an order of ``lines`` (``sku``, ``quantity``, optional unit ``price`` and
        ``shipping_price``) on the seller's listings. ``state`` 1 is a paid order: its
        quantities leave the listings' global stock at once. 0 and 10 wait for a payment
        (``settle``); 8 is a failed payment."""
        emulator = self.emulator
        markets = PLATFORMS[emulator.config.platform]
        locale = country or next(iter(markets))
        if locale not in markets:
            raise ValueError(f"{locale!r} is not a market of the {emulator.config.platform} "
                             "platform")
        if state not in LINE_STATE_AT_CREATION:
            raise ValueError(f"a new order is in state 0, 10, 1 or 8, not {state!r}")
        if not lines:
            raise ValueError("an order has at least one line")
        now = self.now()
        built: list[_Line] = []
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
            listing = emulator.listing(token, sku, locale)
            if listing is None:
                raise KeyError(f"no listing with SKU {sku!r}")
            price = _amount(spec.get("price", listing["price"]), f"line {sku}: price")
            if Decimal(price) <= 0:
                raise ValueError(f"line {sku}: the listing has no price in {locale}; give one")
            built.append(_Line(
                id=0, sku=listing["sku"], listing_id=int(listing["listing_id"]),
                product=str(listing["title"]), product_id=int(listing["backmarket_id"]),
                quantity=quantity, price=price,
                shipping_price=_amount(spec.get("shipping_price", "0"), f"line {sku}: shipping"),
                currency=markets[locale], state=LINE_STATE_AT_CREATION[state],
                date_creation=now, condition=CONDITION.get(str(listing.get("grade")), 11)))
        order = _Order(
            order_id=self._next_order_id, token=token, country_code=locale,
            currency=markets[locale], state=state, lines=built,
            customer=_customer(locale, customer), date_creation=now, date_modification=now)
        if state == 1:
            self._take_stock(order)
            order.date_payment = now
        self._next_order_id += 1
        for line in built:
            line.id = self._next_line_id
            self._line_order[line.id] = order.order_id
            self._next_line_id += 1
        self._orders[order.order_id] = order
        return self.public(order)

    def settle(self, token: str, order_id: int, paid: bool) -> dict[str, Any]:
        """The payment of an order in state 0 or 10 succeeds (state 1) or fails (8)."""
        order = self._own(token, order_id)
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
        return self.public(order)

    def order(self, token: str, order_id: int) -> dict[str, Any] | None:
        found = self._own(token, order_id)
        return None if found is None else self.public(found)

    def orders(self, token: str) -> list[dict[str, Any]]:
        return [self.public(o) for _, o in sorted(self._orders.items()) if o.token == token]

    def history(self, token: str, order_id: int) -> list[tuple[int | None, int]]:
        """The merchant's changes of an order, in order: (line id or None, new state)."""
        found = self._own(token, order_id)
        return [] if found is None else list(found.history)

    def _own(self, token: str, order_id: int) -> _Order | None:
        found = self._orders.get(order_id)
        return found if found is not None and found.token == token else None

    def _take_stock(self, order: _Order) -> None:
        """A paid order is a sale: check every line first, then take the stock."""
        for line in order.lines:
            listing = self.emulator.listing(order.token, line.sku, order.country_code)
            available = 0 if listing is None else int(listing["quantity"])
            if line.quantity > available:
                raise ValueError(f"only {available} of {line.sku} in stock")
        for line in order.lines:
            self.emulator.sell(order.token, line.sku, line.quantity)

    # -- Back Market's endpoints ---------------------------------------------------------

    def get_orders(self, call: Call) -> Reply:
        query = call.query
        page = query_int(call, "page", minimum=1) or 1
        # Only the spec's name: the real API answered its default to ``page_size=100``.
        size = min(query_int(call, "page-size", minimum=1) or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        state = query_int(call, "state")
        if state is not None and state not in ORDER_STATES:
            raise call.bad_request(f"state must be one of {', '.join(map(str, ORDER_STATES))}")
        country = query.get("country_code", "").strip() or None
        if country is not None and country not in COUNTRY_CODES:
            raise call.bad_request(f"country_code must be one of {' '.join(COUNTRY_CODES)}")
        created = _query_date(call, "date_creation")
        modified = _query_date(call, "date_modification")
        selected = [
            order for _, order in sorted(self._orders.items())
            if order.token == call.token and order.state not in HIDDEN_STATES
            and (state is None or order.state == state)
            and (country is None or order.country_code == country)
            and (created is None or order.date_creation >= created)
            and (modified is None or order.date_modification >= modified)
        ]
        count = len(selected)
        start = (page - 1) * size

        def link(number: int) -> str:
            params = {**query, "page": str(number)}
            host = call.headers.get("host", "127.0.0.1")
            return f"http://{host}{call.path}?{urlencode(params)}"

        last_page = max(1, -(-count // size))
        return Reply(200, {
            "count": count,
            "next": link(page + 1) if start + size < count else None,
            "previous": link(min(page - 1, last_page)) if page > 1 else None,
            "results": [self.public(order) for order in selected[start:start + size]],
        })

    def get_order(self, call: Call) -> Reply:
        return Reply(200, self.public(self._find(call)))

    def post_order(self, call: Call) -> Reply:
        order = self._find(call)
        body = call.json_object()
        unknown = sorted(set(body) - UPDATE_FIELDS)
        if unknown:
            raise call.bad_request(f"unknown field(s) {', '.join(unknown)}")
        for name in ("order_id", "id"):
            if name in body and (not _is_int(body[name]) or body[name] != order.order_id):
                raise call.bad_request(f"{name} must be the order id of the URL, "
                                       f"{order.order_id}")
        new_state = body.get("new_state")
        if not _is_int(new_state) or new_state not in LINE_STATES:
            raise call.bad_request("new_state is required: an orderline state, one of "
                                   + ", ".join(map(str, LINE_STATES)))
        if order.state in (0, 10):
            raise _refused(f"order {order.order_id} is in state {order.state}: its payment is "
                           "not validated yet; it must not be processed")
        if order.state == 8:
            raise _refused(f"order {order.order_id} is not paid (state 8): ignore it")
        if new_state == 3:
            self._ship(call, order, body)
        elif new_state in LINE_MOVES:
            self._move_line(call, order, body, new_state)
        else:
            raise _refused(f"new_state {new_state} is not a state a merchant can set; use 2 "
                           "(accept) or 4 (cancel) on a paid line, 3 to ship the order")
        order.date_modification = self.now()
        order.state = _order_state(order)
        return Reply(200, self.public(order))

    def post_invoice(self, call: Call) -> Reply:
        """The seller's invoice for a paid order: a PDF in the ``invoice`` part of a
        ``multipart/form-data`` body. What Back Market checks of the file is not documented;
        the emulator refuses what is not a PDF, an empty or a 10 MiB+ file."""
        order = self._find(call)
        if order.state in (0, 10, 8):
            raise _refused(f"order {order.order_id} is in state {order.state}: it is not paid; "
                           "no invoice can be given for it")
        files = _form_files(call)
        invoice = files.get("invoice")
        if not invoice:
            raise call.bad_request("expected a multipart/form-data body with the PDF in a part "
                                   "named invoice")
        data = invoice[0]
        if len(data) > MAX_INVOICE_BYTES:
            raise call.bad_request(f"invoice: at most {MAX_INVOICE_BYTES // 2**20} MiB")
        if not data.startswith(b"%PDF-"):
            raise call.bad_request("invoice: the file is not a PDF")
        order.invoice = data
        order.invoices += 1
        order.date_bill_provided = order.date_modification = self.now()
        return Reply(200, {})

    def invoice(self, token: str, order_id: int) -> tuple[bytes, int]:
        """The last invoice uploaded for the order and how many uploads there were."""
        found = self._own(token, order_id)
        return (b"", 0) if found is None else (found.invoice, found.invoices)

    def patch_orderline(self, call: Call) -> Reply:
        ident = call.params["line"]
        order_id = self._line_order.get(int(ident)) if ident.isdigit() else None
        order = None if order_id is None else self._own(call.token, order_id)
        if order is None:
            raise HttpError(error_v1(404, "not_found", f"Orderline {ident} not found"))
        line = next(line for line in order.lines if line.id == int(ident))
        body = call.json_object()
        unknown = sorted(set(body) - {"imei", "serial_number"})
        if unknown or not body:
            raise call.bad_request("give imei, serial_number or both, and nothing else")
        imei, serial = _identifiers(call, body)
        for name, value, current in (("imei", imei, line.imei),
                                     ("serial_number", serial, line.serial_number)):
            if value is not None and current and value != current:
                raise HttpError(error_v1(422, "already_set", f"{name} of orderline {line.id} is "
                                         "already registered; it cannot be corrected"))
        line.imei = imei or line.imei
        line.serial_number = serial or line.serial_number
        order.date_modification = self.now()
        return Reply(200, {"imei": line.imei, "serial_number": line.serial_number})

    def _find(self, call: Call) -> _Order:
        ident = call.params["order"]
        if not re.fullmatch(r"\d+", ident):
            raise call.bad_request(f"order_id must be an integer, got {ident!r}")
        found = self._own(call.token, int(ident))
        if found is None:
            raise HttpError(error_v1(404, "not_found", f"Order {ident} not found"))
        return found

    def _move_line(self, call: Call, order: _Order, body: Mapping[str, Any],
                   new_state: int) -> None:
        sku = body.get("sku")
        if not isinstance(sku, str) or not sku.strip():
            raise call.bad_request(f"sku is required with new_state {new_state}: it names the "
                                   "orderline")
        line = next((line for line in order.lines if sku_key(line.sku) == sku_key(sku)), None)
        if line is None:
            raise HttpError(error_v1(404, "not_found",
                                     f"order {order.order_id} has no orderline with SKU {sku}"))
        expected = LINE_MOVES[new_state]
        if line.state != expected:
            raise _refused(f"orderline {line.id} ({line.sku}) is in state {line.state}; "
                           f"new_state {new_state} needs state {expected}")
        if "return_reason" in body:
            reason = body["return_reason"]
            if not _is_int(reason) or reason not in RETURN_REASONS:
                raise call.bad_request("return_reason must be one of "
                                       + ", ".join(map(str, RETURN_REASONS)))
            line.return_reason = reason
        message = body.get("return_message")
        if message is not None:
            if not isinstance(message, str) or len(message) > MAX_RETURN_MESSAGE:
                raise call.bad_request(f"return_message: a text of at most "
                                       f"{MAX_RETURN_MESSAGE} characters")
            line.return_message = message
        line.state = new_state
        order.history.append((line.id, new_state))

    def _ship(self, call: Call, order: _Order, body: Mapping[str, Any]) -> None:
        if order.state == 9:
            raise _refused(f"order {order.order_id} is already processed (state 9); a shipment "
                           "cannot be sent again or corrected")
        if order.state != 3:
            waiting = [line.sku for line in order.lines if line.state == 1]
            raise _refused(f"order {order.order_id} is in state {order.state}: accept or cancel "
                           f"its paid lines first ({', '.join(waiting)})")
        tracking = body.get("tracking_number")
        if not isinstance(tracking, str) or not tracking.strip():
            raise call.bad_request("tracking_number is required with new_state 3")
        if len(tracking) > MAX_TRACKING_NUMBER:
            raise call.bad_request(f"tracking_number: at most {MAX_TRACKING_NUMBER} characters")
        url = body.get("tracking_url")
        if url is not None and (not isinstance(url, str) or len(url) > MAX_TRACKING_URL
                                or not re.match(r"https?://[^\s/]+", url)):
            raise call.bad_request(f"tracking_url: an http(s) URL of at most {MAX_TRACKING_URL} "
                                   "characters")
        shipper = body.get("shipper")
        # Free text: the spec's ``Shipper`` list is the known values (real orders carry
        # names such as "Royal Mail Express"), only the length is bounded.
        if shipper is not None and (not isinstance(shipper, str) or not shipper.strip()
                                    or len(shipper) > MAX_SHIPPER):
            raise call.bad_request(f"shipper: a text of 1 to {MAX_SHIPPER} characters")
        shipped_at = self.now()
        if "date_shipping" in body:
            shipped_at = _date(call, "date_shipping", body["date_shipping"])
        if "vat_type" in body and body["vat_type"] not in ("REGULAR", "MARGINAL"):
            raise call.bad_request("vat_type must be REGULAR or MARGINAL")
        imei, serial = _identifiers(call, body)
        if imei is not None or serial is not None:
            if len(order.lines) != 1 or order.lines[0].quantity != 1:
                raise call.bad_request("imei and serial_number are only accepted on an order of "
                                       "one orderline with a quantity of 1")
            line = order.lines[0]
            if line.state != 2:
                raise _refused(f"orderline {line.id} is not accepted (state {line.state})")
            line.imei = imei or line.imei
            line.serial_number = serial or line.serial_number
        for line in order.lines:
            if line.state == 2:
                line.state = 3
        for line in order.lines:
            if line.state == 3 and shipper:
                line.shipper = shipper
        order.tracking_number = tracking
        order.tracking_url = url or ""
        order.shipper = shipper or order.shipper
        order.date_shipping = shipped_at
        order.history.append((None, 3))

    # -- admin endpoints -----------------------------------------------------------------

    def admin_list(self, call: Call) -> Reply:
        token = self._admin_token(call.query.get("token"))
        return Reply(200, self.orders(token))

    def admin_create(self, call: Call) -> Reply:
        body = call.json_object()
        token = self._admin_token(body.get("token"))
        lines = body.get("lines")
        state = body.get("state", 1)
        customer = body.get("customer")
        if not isinstance(lines, list) or not all(isinstance(x, dict) for x in lines) \
                or not _is_int(state) or not (customer is None or isinstance(customer, dict)):
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
        token = self._admin_token(body.get("token"))
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

    def _admin_token(self, given: object) -> str:
        tokens = self.emulator.config.tokens
        token = given if isinstance(given, str) and given else tokens[0]
        if token not in tokens:
            raise HttpError(error_v1(404, "not_found", "unknown token"))
        return token

    # -- the spec's shapes ---------------------------------------------------------------

    def public(self, order: _Order) -> dict[str, Any]:
        """The order in the spec's ``Order`` shape (unset non-nullable fields left out)."""
        price = sum((Decimal(line.price) * line.quantity for line in order.lines), Decimal(0))
        shipping = sum((Decimal(line.shipping_price) * line.quantity for line in order.lines),
                       Decimal(0))
        address = dict(order.customer)
        data: dict[str, Any] = {
            "order_id": order.order_id,
            "shipping_address": address,
            "billing_address": address,
            "delivery_note": f"https://www.backmarket.fr/delivery_note/{order.order_id}.pdf",
            "is_backship": False,
            "date_creation": _rfc3339(order.date_creation),
            "date_modification": _rfc3339(order.date_modification),
            "state": order.state,
            "orderlines": [_public_line(line) for line in order.lines],
            "price": _money(price),
            "shipping_price": _money(shipping),
            "currency": order.currency,
            "country_code": order.country_code,
            "paypal_reference": None,
            "psp_reference": f"PSP{order.order_id:012d}",
            "installment_payment": False,
            "payment_method": "CARD",
            "sales_taxes": "0.00",
            # Empty strings until shipped, as real orders show them (not left out).
            "tracking_number": order.tracking_number,
            "tracking_url": order.tracking_url,
            "shipper": order.shipper,
            "shipper_display": order.shipper,
            "date_bill_provided": None if order.date_bill_provided is None
            else _rfc3339(order.date_bill_provided),
        }
        if order.date_payment is not None:
            data["date_payment"] = _rfc3339(order.date_payment)
            if order.date_shipping is None:
                data["expected_dispatch_date"] = _rfc3339(order.date_payment + DISPATCH_DELAY)
        if order.date_shipping is not None:
            data["date_shipping"] = _rfc3339(order.date_shipping)
        return data


def _public_line(line: _Line) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": line.id,
        "date_creation": _rfc3339(line.date_creation),
        "state": line.state,
        "price": line.price,
        "shipping_price": line.shipping_price,
        "shipping_delay": 48,
        "currency": line.currency,
        "return_message": line.return_message,
        "listing": line.sku,
        "listing_id": line.listing_id,
        "orderline_fee": _money(Decimal(line.price) * line.quantity / 10),
        "product": line.product,
        "quantity": line.quantity,
        "brand": "",
        "product_id": line.product_id,
        "backcare": False,
        "backcare_price": 0,
        "sales_taxes": "0.00",
        "imei": line.imei,
        "serial_number": line.serial_number,
        "condition": line.condition,
        "shipper": line.shipper,
        "return_reason": line.return_reason,
    }
    return data


def _order_state(order: _Order) -> int:
    """Back Market moves the order itself as its lines move (merchants cannot set it)."""
    states = {line.state for line in order.lines}
    if 1 in states:
        return 1
    if 2 in states:
        return 3
    if states <= FINAL_LINE_STATES:
        return 9
    return order.state


def _identifiers(call: Call, body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    imei = body.get("imei")
    serial = body.get("serial_number")
    if imei is not None and (not isinstance(imei, str) or len(imei) != IMEI_DIGITS
                             or not imei.isdigit() or not stdnum_imei.is_valid(imei)):
        raise call.bad_request(f"imei {imei!r} is not a valid IMEI (15 digits with a valid "
                               "check digit)")
    if serial is not None and (not isinstance(serial, str) or not serial.strip()
                               or len(serial) > MAX_SERIAL):
        raise call.bad_request(f"serial_number: a text of 1 to {MAX_SERIAL} characters")
    return imei, serial


def _form_files(call: Call) -> dict[str, list[bytes]]:
    """The parts of a ``multipart/form-data`` body, by name (empty when it is not one)."""
    content_type = call.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        return {}
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + call.body)
    if not message.is_multipart():
        return {}
    parts: dict[str, list[bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts.setdefault(name, []).append(payload)
    return parts


def _refused(message: str) -> HttpError:
    return HttpError(error_v1(400, "invalid_transition", message))


def _customer(locale: str, given: Mapping[str, str] | None) -> dict[str, str]:
    """The buyer's address in the real orders' snake_case shape (camelCase keys given to the
    admin endpoint are renamed)."""
    country = locale.split("-")[1].upper()
    customer = {
        "first_name": "Victor", "last_name": "Hugo", "street": "3, Imaginary Street",
        "street2": "", "postal_code": "75003" if country == "FR" else "10115",
        "city": "Paris" if country == "FR" else "Berlin", "country": country,
        "phone": "+33639981234", "email": "victor.hugo@example.com", "company": "",
        "customer_id_number": "",
    }
    if given:
        customer.update({CAMEL_ADDRESS.get(str(k), str(k)): str(v) for k, v in given.items()})
    return customer


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _amount(value: object, what: str) -> str:
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{what}: {value!r} is not an amount") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{what}: {value!r} is not an amount")
    return _money(amount)


def _money(amount: Decimal) -> str:
    return f"{amount.quantize(CENT):f}"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")




def _query_date(call: Call, name: str) -> datetime | None:
    raw = call.query.get(name, "").strip()
    # A date and time without a zone ("2026-10-05 14:59:11", as a production PHP client
    # sends on every pull) is accepted in real use; read here as UTC, the zone Back Market
    # answers in (an assumption: which zone it reads it in is not documented).
    if _NAIVE.fullmatch(raw):
        return datetime.fromisoformat(raw.replace(" ", "T")).replace(tzinfo=UTC)
    # A '+' left unencoded in a query string arrives as a space.
    return _date(call, name, raw.replace(" ", "+")) if raw else None


_NAIVE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")


def _date(call: Call, name: str, raw: object) -> datetime:
    moment = None
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            moment = None
    if moment is None or moment.tzinfo is None:
        raise call.bad_request(f"{name} must be an RFC 3339 date-time with a time zone, like "
                               f"2014-06-24T12:55:57Z; got {raw!r}")
    return moment
