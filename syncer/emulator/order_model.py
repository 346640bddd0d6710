"""The emulator's orders as data: an order and its lines, the states of Table 5 and 6 of the
spec, and how an order is shown (``Order``, in the shapes real integrations saw), with the
checks and conversions the order endpoints share. See ``syncer.emulator.orders``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from stdnum import imei as stdnum_imei

from syncer.core.vocabulary import IMEI_DIGITS, MAX_SERIAL
from syncer.emulator.changes import CENT
from syncer.emulator.http import Call, HttpError, error_v1

__all__ = ["LINE_STATES", "ORDER_STATES", "Line", "Order", "public_order"]

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
FIRST_ORDER_ID: Final = 100_001
FIRST_LINE_ID: Final = 500_001


# --- the model -------------------------------------------------------------------------------


@dataclass
class Line:
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
class Order:
    order_id: int
    token: str
    country_code: str
    currency: str
    state: int
    lines: list[Line]
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


def public_order(order: Order) -> dict[str, Any]:
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
        "date_creation": rfc3339(order.date_creation),
        "date_modification": rfc3339(order.date_modification),
        "state": order.state,
        "orderlines": [public_line(line) for line in order.lines],
        "price": money(price),
        "shipping_price": money(shipping),
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
        else rfc3339(order.date_bill_provided),
    }
    if order.date_payment is not None:
        data["date_payment"] = rfc3339(order.date_payment)
        if order.date_shipping is None:
            data["expected_dispatch_date"] = rfc3339(order.date_payment + DISPATCH_DELAY)
    if order.date_shipping is not None:
        data["date_shipping"] = rfc3339(order.date_shipping)
    return data


def public_line(line: Line) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": line.id,
        "date_creation": rfc3339(line.date_creation),
        "state": line.state,
        "price": line.price,
        "shipping_price": line.shipping_price,
        "shipping_delay": 48,
        "currency": line.currency,
        "return_message": line.return_message,
        "listing": line.sku,
        "listing_id": line.listing_id,
        "orderline_fee": money(Decimal(line.price) * line.quantity / 10),
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


def order_state(order: Order) -> int:
    """Back Market moves the order itself as its lines move (merchants cannot set it)."""
    states = {line.state for line in order.lines}
    if 1 in states:
        return 1
    if 2 in states:
        return 3
    if states <= FINAL_LINE_STATES:
        return 9
    return order.state


def identifiers(call: Call, body: Mapping[str, Any]) -> tuple[str | None, str | None]:
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


def refused(message: str) -> HttpError:
    return HttpError(error_v1(400, "invalid_transition", message))


def buyer_address(locale: str, given: Mapping[str, str] | None) -> dict[str, str]:
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


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def amount(value: object, what: str) -> str:
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{what}: {value!r} is not an amount") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{what}: {value!r} is not an amount")
    return money(amount)


def money(amount: Decimal) -> str:
    return f"{amount.quantize(CENT):f}"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")




def query_date(call: Call, name: str) -> datetime | None:
    raw = call.query.get(name, "").strip()
    # A date and time without a zone ("2026-10-05 14:59:11", as a production PHP client
    # sends on every pull) is accepted in real use; read here as UTC, the zone Back Market
    # answers in (an assumption: which zone it reads it in is not documented).
    if NAIVE.fullmatch(raw):
        return datetime.fromisoformat(raw.replace(" ", "T")).replace(tzinfo=UTC)
    # A '+' left unencoded in a query string arrives as a space.
    return parse_date(call, name, raw.replace(" ", "+")) if raw else None


NAIVE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")


def parse_date(call: Call, name: str, raw: object) -> datetime:
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
