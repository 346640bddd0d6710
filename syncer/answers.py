"""What Back Market's answers must look like before the engine reads them.

The shapes of the spec (``ListingPublic``, the paginated lists) as pydantic models, with what
real integrations observed (``reference/BACKMARKET.md``): a price is a string but sometimes a
number, ``max_price`` a number, a quantity once negative. Unknown fields are allowed (Back
Market adds fields); a field the engine reads with the wrong type (``"count": NaN``,
``"results": "ab"``, a quantity of ``1e400``) is one ``ApiError`` that names the endpoint
and the field, never a traceback deep in a reconciliation.

The validated answer is the JSON as received: the models check, they do not convert.
"""

from __future__ import annotations

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


class Orderline(_Answer):
    sku: str | None = None
    listing: str | None = None
    quantity: int | None = None
    state: int | None = None


class Order(_Answer):
    order_id: int
    state: int | None = None
    orderlines: list[Orderline] = []


class OrderPage(_Page):
    results: list[Order] = []


class TaskEntry(_Answer):
    """One entry of a batch task's result: what it carries ties it to the line it answers
    (``syncer.taskresult``); none of it is required, its types are."""

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
        raise ApiError(f"{where}: unexpected answer from Back Market: field {field}: "
                       f"{error['msg'].removeprefix('Value error, ')} (got {shown})") from None
    return body
