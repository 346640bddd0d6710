"""The values that flow between stages: offers, rejections, and their published form.

An offer is one SKU as one store (one country) publishes it. Its *published fields* are the
exact values the engine sends and records in the snapshot, in canonical form (money as a
two-decimal string, shipping options as one string), so that the diff compares like with
like and the snapshot stores nothing that can drift by rounding.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Final, NamedTuple

# Published fields, in the order of ``Offer.published()`` and of the snapshot columns.
# Global on Back Market (one listing serves every country of a platform): the product link,
# the grade and the quantity. Per country: everything from ``price`` on.
FIELDS: Final = (
    "product_id",
    "ean",
    "grade",
    "quantity",
    "price",
    "currency",
    "warranty_delay",
    "comment",
    "min_price",
    "max_price",
    "deee",
    "shipping",
)
# Fields a single-listing update (POST /ws/listings/{id}) cannot change (its request body in
# the spec has no such property): they need the batch endpoint, whose rows match by SKU.
BATCH_ONLY_FIELDS: Final = frozenset({"product_id", "ean", "grade", "deee", "max_price"})

Published = tuple[str | int | None, ...]
QUANTITY: Final = FIELDS.index("quantity")
# Field name -> its index in a Published tuple.
FIELD_INDEX: Final = {name: i for i, name in enumerate(FIELDS)}

CENT: Final = Decimal("0.01")
# Back Market's BackPricer keeps min_price <= price <= min_price * 1.08 (reference/
# BACKMARKET.md, observed in production: INVALID_BACKPRICER_RANGE, or BackBox silently
# overrides the price): one constant on the engine's side, read by validation (a store's
# backpricer_band setting turns its check off) and pricing. The emulator keeps its own.
BACKPRICER_BAND: Final = Decimal("1.08")


@lru_cache(maxsize=65_536)
def money(value: Decimal) -> str:
    """Canonical text of an amount: two decimals, no exponent (``Decimal('1E+1')`` -> '10.00').
    Cached: catalogs repeat the same prices over and over."""
    return f"{value.quantize(CENT):f}"


@dataclass(frozen=True, slots=True)
class ShippingOption:
    shipper: str
    price: Decimal
    delay_hours: int

    def canonical(self) -> str:
        return f"{self.shipper}|{money(self.price)}|{self.delay_hours}"


def parse_shipping(text: str | None) -> tuple[ShippingOption, ...]:
    """Inverse of the canonical shipping text stored in the snapshot."""
    if not text:
        return ()
    options = []
    for part in text.split(";"):
        shipper, price, delay = part.rsplit("|", 2)
        options.append(ShippingOption(shipper, Decimal(price), int(delay)))
    return tuple(options)


class Offer(NamedTuple):
    """A valid offer: what one store should publish for one SKU. (A named tuple: a million
    of them are made per plan, and a tuple is made several times faster than a frozen
    dataclass.)"""

    store: str
    row: int
    sku: str
    product_id: str | None
    ean: str | None
    grade: str
    quantity: int
    price: Decimal
    currency: str
    warranty_delay: int
    comment: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    deee: Decimal | None = None
    shipping: tuple[ShippingOption, ...] = ()
    # Filled by validation, which knows them anyway: the key and the published fields are
    # then not computed again for every use (a million times per plan).
    key: str | None = None
    target: Published | None = None

    @property
    def sku_key(self) -> str:
        return self.key if self.key is not None else sku_key(self.sku)

    def published(self) -> Published:
        if self.target is not None:
            return self.target
        return self.compute_published()

    def compute_published(self) -> Published:
        return (
            self.product_id,
            self.ean,
            self.grade,
            self.quantity,
            money(self.price),
            self.currency,
            self.warranty_delay,
            self.comment,
            None if self.min_price is None else money(self.min_price),
            None if self.max_price is None else money(self.max_price),
            None if self.deee is None else money(self.deee),
            ";".join(s.canonical() for s in self.shipping) or None,
        )


def sku_key(sku: str) -> str:
    """Back Market matches SKUs case-insensitively: this is the key everything is indexed by.
    "Café" typed on a Mac (e + combining accent) and on Windows (é) is one SKU: non-ASCII
    SKUs are compared canonically (NFD, case folded, NFC); ASCII ones skip it (a hot path)."""
    if sku.isascii():
        return sku.casefold()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", sku).casefold())


def visible(text: str) -> str:
    """Text for a person to read: every character that does not print (a control, a format
    character such as U+200B or U+FEFF, a special space) shown as <U+XXXX>, so that two SKUs
    that look the same on screen do not read the same in a report."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"<U+{ord(c):04X}>" for c in text)


def content_hash(published: Published) -> str:
    """A short, stable fingerprint of published fields (stored beside them in the snapshot)."""
    text = "\x1f".join("\x00" if v is None else str(v) for v in published)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Rejection:
    """One problem with one catalog row, phrased so a merchant can fix it.

    ``store`` is None when the problem concerns the whole row (every store), else the name of
    the one store whose offer it blocks.
    """

    row: int
    sku: str | None
    field: str
    value: str | None
    expected: str
    store: str | None = None
    column: str | None = None  # the catalog's column the field was read from, if any

    def message(self) -> str:
        where = f"row {self.row}"
        if self.sku:
            where += f" (SKU {visible(self.sku)})"
        if self.store:
            where += f" [store {self.store}]"
        shown = "empty" if self.value in (None, "") else repr(_clip(self.value))
        named = self.field if not self.column or self.column == self.field else \
            f"{self.field} (column {visible(self.column)!r})"
        return f"{where}: {named} is {shown}; expected {self.expected}"

    def to_dict(self) -> dict[str, str | int | None]:
        return {
            "row": self.row,
            "sku": self.sku,
            "store": self.store,
            "field": self.field,
            "column": self.column,
            "value": None if self.value is None else _clip(self.value),
            "expected": self.expected,
            "message": self.message(),
        }


def _clip(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def shown_rows(rows: Sequence[int], shown: int = 5) -> str:
    """Row numbers for a message: the first ``shown``, then how many more."""
    text = ", ".join(str(row) for row in rows[:shown])
    return text + (f" and {len(rows) - shown} more" if len(rows) > shown else "")
