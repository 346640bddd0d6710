"""What one listing write changes (a single update's JSON body or a batch row's cells, in
one country): each field validated as Back Market does, then applied to the listing only when
no field is in error.

A write that leaves a listing's price outside the BackPricer band, ``min_price <= price <=
min_price x 1.08``, is refused with ``INVALID_BACKPRICER_RANGE``, as integrators observe (the
spec says nothing of it). A batch row's ``state`` is not read as the legacy grade code: as
integrators use it, ``state=3`` creates (or puts) the listing as a draft, offline whatever its
quantity, and another value ends the draft.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Final

from syncer.core.vocabulary import SHIPPERS
from syncer.emulator.config import DEFAULT_CURRENCY, GRADES, PLATFORMS, EmulatorConfig
from syncer.emulator.model import Listing, Market, Product

__all__ = ["CENT", "MAX_INT", "SINGLE_UPDATE_FIELDS", "Changes", "apply_changes", "integer",
           "money", "parse_changes"]

# A batch row's ``state`` is not the legacy grade code: integrators send 3 to create a
# listing as a draft (offline).
DRAFT_STATE: Final = 3
MAX_COMMENT: Final = 500
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


@dataclass
class Changes:
    """Validated values of one write; applied only when ``errors`` is empty."""

    grade: str | None = None
    quantity: int | None = None
    product: Product | None = None
    market: dict[str, Any] = field(default_factory=dict)
    shippings: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None deletes
    errors: list[tuple[str | None, str]] = field(default_factory=list)
    proposed: Product | None = None  # a product this row proposed or updated
    proposed_new: bool = False
    proposal_refused: bool = False  # the row proposed a product, and it was refused
    draft: bool | None = None  # a batch row's state: 3 makes a draft, another value ends it

    def error(self, name: str | None, message: str) -> None:
        self.errors.append((name, message))


def parse_changes(
    values: Mapping[str, object], locale: str, market: Market | None, config: EmulatorConfig
) -> Changes:
    """Validate the fields of one write in one country (JSON values or CSV cells)."""
    changes = Changes()
    if "quantity" in values:
        changes.quantity = integer(values["quantity"], "quantity", changes, minimum=0)
    if "warranty_delay" in values:
        warranty = integer(values["warranty_delay"], "warranty_delay", changes, minimum=0)
        if warranty is not None and warranty < config.warranty_min:
            changes.error(
                "warranty_delay",
                f"warranty_delay must be at least {config.warranty_min} months,"
                f" got {warranty}",
            )
        elif warranty is not None:
            changes.market["warranty_delay"] = warranty
    if "price" in values:
        price = money(values["price"], "price", changes, positive=True)
        if price is not None:
            changes.market["price"] = price
    for name in ("min_price", "max_price", "deee"):
        if name not in values:
            continue
        if values[name] is None and name == "min_price":
            changes.market[name] = None  # nullable: removes the BackPricer floor
            continue
        amount = money(values[name], name, changes, positive=name != "deee")
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
    _check_backpricer_band(changes, market)
    _parse_currency(values, locale, changes, config)
    for slot in _SLOTS:
        _parse_shipping(values, slot, market, changes)
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
        state = integer(values["state"], "state", changes, minimum=0)
        if state is not None:
            changes.draft = state == DRAFT_STATE
    return changes

def _check_backpricer_band(changes: Changes, market: Market | None) -> None:
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

def _parse_currency(
    values: Mapping[str, object], locale: str, changes: Changes, config: EmulatorConfig
) -> None:
    expected = PLATFORMS[config.platform][locale]
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
        default = DEFAULT_CURRENCY.get(config.platform)
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
    values: Mapping[str, object], slot: str, market: Market | None, changes: Changes
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
            option[key] = None if value is None else integer(value, name, changes, minimum=0)
        else:
            option[key] = (
                None if value is None else money(value, name, changes, positive=False)
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

def apply_changes(listing: Listing, locale: str, changes: Changes) -> list[str]:
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
    market = listing.markets.setdefault(locale, Market())
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


def integer(value: object, name: str, changes: Changes, *, minimum: int) -> int | None:
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


def money(value: object, name: str, changes: Changes, *, positive: bool) -> str | None:
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
