"""What Back Market's answers must look like before the engine reads them.

The shapes of the spec (``ListingPublic``, the paginated lists) as pydantic models, with what
real integrations observed (``reference/BACKMARKET.md``): a price is a string but sometimes a
number, ``max_price`` a number, a quantity once negative. Unknown fields are allowed (Back
Market adds fields); a field the engine reads with the wrong type (``"count": NaN``,
``"results": "ab"``, a quantity of ``1e400``) is one ``ApiError`` that names the endpoint
and the field, never a traceback deep in a reconciliation.

Orders are read in the shapes real integrations see (snake_case addresses, empty strings
for unset identifiers) and the spec's camelCase addresses alike; a faulty field of an order
is named with its order id.

The validated answer is the JSON as received: the models check, they do not convert.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from syncer.errors import ApiError


def _amount(value: Any) -> Any:
    """An amount as Back Market writes one: a decimal string or a finite number."""
    if value is None or value == "":
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected a decimal amount (a string or a number)")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("expected a decimal amount") from None
    if not number.is_finite():
        raise ValueError("expected a finite amount")
    return value


Amount = Annotated[Any, BeforeValidator(_amount)]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", strict=False)


class Shipping(_Answer):
    country_code: str | None = None
    shipper: str | None = None
    shipping_price: Amount = None
    shipping_delay: int | float | None = None


class Listing(_Answer):
    id: str | int | None = None
    listing_id: int | None = None
    sku: str
    quantity: int | None = None
    price: Amount = None
    min_price: Amount = None
    max_price: Amount = None
    currency: str | None = None
    grade: str | None = None
    warranty_delay: int | None = None
    comment: str | None = None
    publication_state: int | None = None
    product_id: str | int | None = None
    shippings: list[Shipping] | None = None


class _Page(_Answer):
    count: int | None = Field(None, ge=0)
    next: str | None = None


class ListingPage(_Page):
    results: list[Listing] = []


def _moment(value: Any) -> Any:
    """A date-time as Back Market writes one (RFC 3339), or empty."""
    if value is None or value == "":
        return value
    if not isinstance(value, str):
        raise ValueError("expected an RFC 3339 date-time (a string)")
    try:
        datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("expected an RFC 3339 date-time") from None
    return value


Moment = Annotated[Any, BeforeValidator(_moment)]
# A free text cell some sellers' data holds as a number (a postal code, a phone).
Text = str | int | None


class Address(_Answer):
    """A buyer's address: real orders write it in snake_case; the spec's camelCase names
    (``firstName``, ``postalCode``, ``phoneNumber``) are read too."""

    first_name: Text = None
    last_name: Text = None
    street: Text = None
    street2: Text = None
    postal_code: Text = None
    city: Text = None
    country: Text = None
    phone: Text = None
    email: Text = None
    company: Text = None
    customer_id_number: Text = None
    firstName: Text = None
    lastName: Text = None
    postalCode: Text = None
    phoneNumber: Text = None


class Orderline(_Answer):
    id: int
    sku: str | None = None
    listing: str | None = None
    listing_id: int | str | None = None
    product_id: int | str | None = None
    product: str | None = None
    quantity: int | None = Field(None, ge=0)
    state: int | None = None
    price: Amount = None
    shipping_price: Amount = None
    currency: str | None = None
    condition: int | None = None
    shipper: str | None = None
    return_reason: int | None = None
    return_message: str | None = None
    imei: str | None = None
    serial_number: str | None = None


class Order(_Answer):
    order_id: int
    state: int | None = None
    country_code: str | None = None
    currency: str | None = None
    price: Amount = None
    shipping_price: Amount = None
    date_creation: Moment = None
    date_modification: Moment = None
    date_payment: Moment = None
    date_shipping: Moment = None
    date_bill_provided: Moment = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    shipper: str | None = None
    shipper_display: str | None = None
    shipping_address: Address | None = None
    billing_address: Address | None = None
    orderlines: list[Orderline] = []


class OrderPage(_Page):
    results: list[Order] = []


class TaskEntry(_Answer):
    """One entry of a batch task's result: what it carries ties it to the line it answers
    (``syncer.backmarket.taskresult``); none of it is required, its types are."""

    sku: str | int | None = None
    id: str | int | None = None
    listing_id: int | str | None = None
    product_id: str | int | None = None
    backmarket_id: int | str | None = None
    publication_state: int | None = None
    grade: str | None = None
    ean: str | int | None = None
    row: int | str | None = None
    status: str | None = None


# An error entry may be an object, a bare message or a list of messages.
ErrorEntry = TaskEntry | str | list[Any]


class TaskResult(_Answer):
    """``product_success`` and ``product_errors`` as Back Market answers (both objects, their
    keys of unknown meaning); ``listings``, the shape this project first guessed."""

    product_success: dict[str, TaskEntry] | list[TaskEntry] | None = None
    product_errors: dict[str, ErrorEntry] | list[ErrorEntry] | None = None
    listings: list[TaskEntry] | None = None


class Task(_Answer):
    task_id: int | None = None
    action_status: int
    last_action_error: str | None = None
    result: TaskResult | list[TaskEntry] | str | None = None


def checked(model: type[BaseModel], body: dict[str, Any], where: str) -> dict[str, Any]:
    """``body`` when it has the shape of ``model``; else an ApiError naming ``where`` (the
    method and path) and the first field that is wrong."""
    try:
        model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in error["loc"]) or "(the answer)"
        shown = repr(error.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        subject = _subject(body, error["loc"])
        raise ApiError(f"{where}: unexpected answer from Back Market: {subject}"
                       f"field {field}: {error['msg'].removeprefix('Value error, ')} "
                       f"(got {shown})") from None
    return body


# --- GET /ws/backbox/v1/competitors/{listingId} -----------------------------------------------

# The spec's ``MonetaryAmount.amount``: digits, an optional point and decimals (trailing
# zeros allowed, "13.000"); at most 32 characters and below a million, so that a hostile
# answer ("1e400", a 10 MB string of digits) is refused here, not stored.
_MONEY = r"^\d{1,12}(\.\d{0,18})?$"
MAX_COMPETITION_AMOUNT = Decimal("1000000")
MAX_COMPETITORS = 200  # entries in one answer: one per market, 16 markets at most today


def _money_amount(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("expected the amount as a decimal string")
    if len(value) > 32 or not re.fullmatch(_MONEY, value):
        raise ValueError("expected a decimal string such as \"399.00\"")
    number = Decimal(value)
    if number >= MAX_COMPETITION_AMOUNT:
        raise ValueError(f"amount not below {MAX_COMPETITION_AMOUNT}")
    if number != number.quantize(Decimal("0.01")):
        raise ValueError("more decimals than cents")
    return value


class MonetaryAmount(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    amount: Annotated[str, BeforeValidator(_money_amount)]
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class Competitor(BaseModel):
    """One listing x market of the answer (the spec's ``Competitor``), every field the
    engine reads checked strictly: ``is_winning`` a boolean, not "yes" or 1."""

    model_config = ConfigDict(extra="allow", strict=True)

    listing_id: str = Field(min_length=1, max_length=64)
    product_id: str | None = Field(None, max_length=64)
    market: str = Field(pattern=r"^[A-Z]{2}$")
    price: MonetaryAmount
    min_price: MonetaryAmount | None
    price_to_win: MonetaryAmount
    winner_price: MonetaryAmount | None
    is_winning: bool


class Competitors(BaseModel):
    model_config = ConfigDict(strict=True)

    entries: list[Competitor] = Field(max_length=MAX_COMPETITORS)


def checked_competitors(body: Any, where: str) -> list[dict[str, Any]]:
    """The competitors answer (a JSON list) when every entry has the spec's shape; else one
    ApiError naming ``where`` and the first wrong field (``0.price.amount``)."""
    if not isinstance(body, list):
        raise ApiError(f"{where}: unexpected answer from Back Market: expected a list of "
                       f"competitors (got {type(body).__name__})")
    try:
        checked(Competitors, {"entries": body}, where)
    except ApiError as exc:  # name the entry as it is in the answer: "0.price.amount"
        raise ApiError(str(exc).replace("field entries.", "field ", 1)) from None
    return body


def _subject(body: Any, loc: tuple[int | str, ...]) -> str:
    """The order the faulty field belongs to ("order 12, "), so a seller can look it up."""
    node = body
    found = ""
    for part in loc:
        if isinstance(node, dict) and isinstance(node.get("order_id"), int | str):
            found = f"order {str(node['order_id'])[:20]}, "
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    return found


def address(data: Any) -> dict[str, str]:
    """An order's address (real snake_case or the spec's camelCase) in snake_case, every
    field a string ("" when absent)."""
    data = data if isinstance(data, dict) else {}
    camel = {"first_name": "firstName", "last_name": "lastName", "postal_code": "postalCode",
             "phone": "phoneNumber"}
    found = {}
    for name in Address.model_fields:
        if name in camel.values():
            continue
        value = data.get(name)
        if value in (None, "") and name in camel:
            value = data.get(camel[name])
        found[name] = "" if value is None else str(value)
    return found
