"""Validation: each mapped catalog row becomes valid offers (one per store) or rejections.

Pure: no I/O. Every rejection names the row, the SKU, the field, the value found and what was
expected, so the merchant can fix the catalog without reading code. A row's problems are all
reported at once. Row-level problems (SKU, product link, grade, stock) block the row in every
store; a store's own fields (price, warranty, comment...) block only that store's offer.
Each cell is read by ``syncer.planning.cells``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from operator import itemgetter
from typing import Final, NamedTuple, Protocol

from syncer.core.offers import (
    BACKPRICER_BAND,
    Offer,
    Rejection,
    ShippingOption,
    money,
    sku_key,
)
from syncer.planning.cells import (
    BadValue,
    parse_amount,
    parse_count,
    parse_ean,
    parse_product_id,
    sku_problem,
)
from syncer.planning.mapping import CompiledMapping, Profile, StoreMapping
from syncer.planning.sources import Getter

# Bump when a rule changes what a row publishes: rows confirmed under older rules are then
# validated again instead of being taken as unchanged (see planner.fingerprint).
VALIDATION_VERSION: Final = 3


MAX_COMMENT: Final = 500




_CENT: Final = Decimal("0.01")
_make_offer: Final = Offer._make
_new_offer: Final = tuple.__new__  # an Offer of every field, without _make's Python frame

# Cell texts remembered per store by the plain path (bounded memory whatever the catalog).
PLAIN_MEMO: Final = 4096

# An amount whose canonical text (``money``) is the text itself.
_MONEY_TEXT: Final = re.compile(r"[1-9][0-9]{0,8}\.[0-9]{2}")


# Never in text sent or stored: control characters (PostgreSQL cannot even store a NUL) and
# lone surrogates (not encodable as UTF-8). Tabs and line breaks are fine in a comment.
_BAD_TEXT: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


@dataclass
class RowResult:
    """What one catalog row gave: offers by store, and the problems found."""

    row: int
    sku: str | None
    offers: list[Offer] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # Stores whose offer this row blocks (all stores when the problem is row-level).
    rejected_stores: set[str] = field(default_factory=set)
    # Stores where the row is listed (a price is given), valid or not.
    listed_stores: set[str] = field(default_factory=set)
    # Stores whose price cell is empty on this row: store -> the column read.
    unpriced: dict[str, str] = field(default_factory=dict)
    # False when the row cannot be tied to a SKU with certainty (no SKU, a SKU cell that is
    # not a valid SKU, or a row with the wrong number of fields): its ``key`` is then None,
    # and no offer of the run may be taken for "gone from the catalog" (invariant 10).
    sku_certain: bool = True

    @property
    def key(self) -> str | None:
        return None if self.sku is None or not self.sku_certain else sku_key(self.sku)


class _StoreGetters(NamedTuple):
    """A store's getters looked up once, not once per row."""

    mapping: StoreMapping
    price: Getter
    currency: Getter | None
    warranty: Getter | None
    comment: Getter | None
    min_price: Getter | None
    max_price: Getter | None
    # The shipping options (numbered from 1) whose carrier can be given at all.
    shipping: tuple[tuple[int, dict[str, Getter]], ...]


class Validator:
    """Validates rows in catalog order; remembers SKUs to reject case-insensitive duplicates.
    ``seen`` (SKU key -> first row and spelling) may be shared with a caller that skips
    validating rows it knows unchanged, so that duplicates are still caught. ``reserved``
    (store -> SKU key -> units, see ``syncer.planning.reservations``) holds units back from a
    store's stock: the stores of one account share one mapping, as they share the stock."""

    def __init__(self, mapping: CompiledMapping,
                 seen: dict[str, tuple[int, str]] | None = None,
                 reserved: Mapping[str, Mapping[str, int]] | None = None,
                 plain: bool = True) -> None:
        """``plain``: False turns the plain path off (every row validated fully: tests)."""
        self.mapping = mapping
        self._reserved = {name: units for name, units in (reserved or {}).items() if units}
        self.width = len(mapping.header)
        self._seen: dict[str, tuple[int, str]] = {} if seen is None else seen
        self._offer = mapping.offer
        self._all_stores = frozenset(s.store.name for s in mapping.stores)
        # (field, store or None) -> the seller's column, named in rejections.
        self._columns: dict[tuple[str, str | None], str] = {
            (name, None): g.column for name, g in mapping.offer.items() if g.column}
        self._columns.update({(name, m.store.name): g.column for m in mapping.stores
                              for name, g in m.fields.items() if g.column})
        # The row-level getters, looked up once (a row calls each of them).
        self._sku = mapping.offer["sku"]
        self._grade = mapping.offer["grade"]
        self._product_id = mapping.offer.get("product_id")
        self._ean = mapping.offer.get("ean")
        self._deee = _live(mapping.offer.get("deee"))
        self._stores = tuple(
            _StoreGetters(
                m, m.fields["price"], _live(m.fields.get("currency")),
                _live(m.fields.get("warranty")), _live(m.fields.get("comment")),
                _live(m.fields.get("min_price")), _live(m.fields.get("max_price")),
                tuple((number, option) for number, option in enumerate(m.shipping, start=1)
                      if _live(option.get("shipper")) is not None))
            for m in mapping.stores)
        # The plain path (``_validate_plain``): per store, its price getter, the column an
        # empty price names, the getters that send a row to full validation when they give
        # anything (min/max price, carriers), the cells that decide its currency, warranty
        # and comment, and what those cells gave, remembered (at most PLAIN_MEMO cell
        # texts per store: catalogs repeat them; a store's own, as its rules differ).
        memos: list[dict[object, tuple[str, int, str | None]]] = [{} for _ in self._stores]
        self._plain = [
            (g.mapping.store.name, g.price.index, g.price.default or None,
             g.price.column or "price",
             tuple(getter for getter in (g.min_price, g.max_price) if getter is not None)
             + tuple(option["shipper"] for _, option in g.shipping),
             _cells(g.currency, g.warranty, g.comment), memo, g)
            for g, memo in zip(self._stores, memos, strict=True)] if plain else []
        # The stock cells (stock, safety stock, max quantity) -> the quantity they give.
        self._count_cells = _cells(*(mapping.offer.get(name) for name in
                                     ("stock", "safety_quantity", "max_quantity")))
        self._quantities: dict[object, int] = {}

    def validate(self, row: int, values: Sequence[str]) -> RowResult:
        if self._plain and len(values) == self.width:
            result = self._validate_plain(row, values)
            if result is not None:
                return result
        return self.validate_fully(row, values)

    def _validate_plain(self, row: int, values: Sequence[str]) -> RowResult | None:
        """The row's result when nothing in it is wrong or unusual, read with fewer calls
        (a first plan validates a million offers); None when it has anything to report or
        anything this path does not read (DEEE, min/max price, shipping, units held back):
        ``validate_fully`` then gives the result, messages and all. What this path gives
        is exactly what ``validate_fully`` gives (tests/test_first_plan.py)."""
        sku = self._sku(values)
        if sku is None or sku_problem(sku) is not None:
            return None
        key = sku_key(sku)
        if key in self._seen:
            return None
        product_id = ean = None
        raw = self._product_id(values) if self._product_id else None
        raw_ean = self._ean(values) if self._ean else None
        try:
            if raw is not None:
                product_id = parse_product_id(raw)
            if raw_ean is not None:
                ean = parse_ean(raw_ean)
            elif raw is None:
                return None
        except BadValue:
            return None
        raw = self._grade(values)
        grade = None if raw is None else self.mapping.profile.grade(raw)
        if grade is None:
            return None
        counts = self._count_cells(values)
        quantity = self._quantities.get(counts)
        if quantity is None:
            quantity = _quantity(self._offer, values, _ignore)
            if quantity is None:
                return None
            if len(self._quantities) < PLAIN_MEMO:
                self._quantities[counts] = quantity
        if self._deee and self._deee(values) is not None:
            return None
        if self._reserved and any(units.get(key) for units in self._reserved.values()):
            return None
        offers: list[Offer] = []
        listed: set[str] = set()
        unpriced: dict[str, str] = {}
        canonical_text = _MONEY_TEXT.fullmatch
        for name, index, default, unpriced_column, extra, cells, memo, getters in self._plain:
            # the price getter, inline
            price_text = (values[index].strip() if index is not None else "") or default
            if price_text is None:
                unpriced[name] = unpriced_column
                continue
            if extra and any(getter(values) is not None for getter in extra):
                return None
            canonical = canonical_text(price_text) is not None
            seen_cells = cells(values)
            fields = memo.get(seen_cells)
            if fields is None:
                # Checked as full validation checks them, then remembered (bounded).
                checked = _store_fields(self.mapping.profile, getters, values, price_text,
                                        _ignore)
                if checked is None:
                    return None
                price, currency, warranty, comment = checked[:4]
                if len(memo) < PLAIN_MEMO:
                    memo[seen_cells] = currency, warranty, comment
            else:
                if canonical:  # a valid price, parse_amount's fast case
                    price = Decimal(price_text)
                else:
                    try:
                        price = parse_amount(price_text)
                    except BadValue:
                        return None
                currency, warranty, comment = fields
            listed.add(name)
            offers.append(_new_offer(Offer, (
                name, row, sku, product_id, ean, grade, quantity, price, currency, warranty,
                comment, None, None, None, (), key,
                (product_id, ean, grade, quantity, price_text if canonical else money(price),
                 currency, warranty, comment, None, None, None, None))))
        self._seen[key] = (row, sku)
        return RowResult(row, sku, offers, [], set(), listed, unpriced)

    def validate_fully(self, row: int, values: Sequence[str]) -> RowResult:
        """The row's result, every cell read and every problem reported."""
        offer = self._offer
        if len(values) != self.width:
            # Which cell holds the SKU of a shifted row cannot be known: never guess it (a
            # guess zeroes the real SKU's offer, or ties the row to another one).
            all_stores = set(self._all_stores)
            result = RowResult(row, None, sku_certain=False)
            result.rejections.append(Rejection(
                row, None, "row", f"{len(values)} fields",
                f"{self.width} fields as in the header (check quoting and delimiters); "
                "its SKU cannot be told, so no offer is zeroed as gone from the catalog "
                "this run",
            ))
            result.rejected_stores = all_stores
            result.listed_stores = all_stores
            return result

        problems: list[Rejection] = []
        sku = self._sku(values)
        result = RowResult(row, sku)
        key: str | None = None

        def reject(field_name: str, value: str | None, expected: str,
                   store: str | None = None) -> None:
            column = self._columns.get((field_name, store)) or \
                self._columns.get((field_name, None))
            problems.append(Rejection(row, sku, field_name, value, expected, store, column))

        if sku is None:
            result.sku_certain = False
            reject("sku", None, "a SKU (the listing's identifier, unique per seller)")
        elif (problem := sku_problem(sku)) is not None:
            result.sku_certain = False
            reject("sku", sku, problem)
        else:
            key = sku_key(sku)
            first = self._seen.get(key)
            if first is not None:
                reject("sku", sku, f"a unique SKU; row {first[0]} already uses {first[1]!r} "
                                   "(Back Market matches SKUs ignoring case and accent encoding)")
            else:
                self._seen[key] = (row, sku)

        product_id = ean = None
        raw = self._product_id(values) if self._product_id else None
        if raw is not None:
            try:
                product_id = parse_product_id(raw)
            except BadValue as exc:
                reject("product_id", raw, exc.expected)
        raw_ean = self._ean(values) if self._ean else None
        if raw_ean is not None:
            try:
                ean = parse_ean(raw_ean)
            except BadValue as exc:
                reject("ean", raw_ean, exc.expected)
        if raw is None and raw_ean is None:
            reject("product_id", None, "a product link: a Back Market product UUID or URL "
                                       "(product_id), or an EAN")

        grade = None
        raw = self._grade(values)
        if raw is None:
            reject("grade", None, self.mapping.profile.grade_vocabulary())
        else:
            grade = self.mapping.profile.grade(raw)
            if grade is None:
                reject("grade", raw, self.mapping.profile.grade_vocabulary())

        quantity = _quantity(offer, values, reject)

        deee = None
        raw = self._deee(values) if self._deee else None
        if raw is not None:
            try:
                deee = parse_amount(raw, positive=False)
            except BadValue as exc:
                reject("deee", raw, exc.expected)

        row_ok = not problems
        profile = self.mapping.profile
        offer_key = key if key is not None else (sku_key(sku) if sku is not None else None)
        for getters in self._stores:
            price_text = getters.price(values)
            if price_text is None:
                # Not offered in this store: fine for a new offer; for one live there, the
                # diff turns it into a rejection (or a withdrawal, when the store says so).
                result.unpriced[getters.mapping.store.name] = getters.price.column or "price"
                continue
            store = getters.mapping.store
            result.listed_stores.add(store.name)
            before = len(problems)
            fields = _store_fields(profile, getters, values, price_text, reject)
            if not row_ok or len(problems) > before or fields is None:
                result.rejected_stores.add(store.name)
                continue
            assert sku is not None and grade is not None and quantity is not None
            price, currency, warranty, comment, min_price, max_price, shipping = fields
            store_deee = deee if store.send_deee else None
            units = self._reserved.get(store.name)
            store_quantity = quantity
            if units and (held := units.get(offer_key or "")):
                # Few rows (the SKUs of unshipped orders): their cells are read again.
                store_quantity = _quantity(offer, values, _ignore, held) or 0
            target = (product_id, ean, grade, store_quantity, money(price), currency, warranty,
                      comment, None if min_price is None else money(min_price),
                      None if max_price is None else money(max_price),
                      None if store_deee is None else money(store_deee),
                      ";".join([option.canonical() for option in shipping]) if shipping
                      else None)
            # _make: every field given, without the keyword handling of Offer(...) (a million
            # offers per first plan)
            result.offers.append(_make_offer((
                store.name, row, sku, product_id, ean, grade, store_quantity, price, currency,
                warranty, comment, min_price, max_price, store_deee, shipping, offer_key,
                target)))
        if not row_ok:
            result.rejected_stores = set(self._all_stores)
            result.listed_stores = set(self._all_stores)
        result.rejections = problems
        return result


def _cells(*getters: Getter | None) -> Callable[[Sequence[str]], object]:
    """What gives the raw cells these getters read from a row (the ones given by a
    column; the others give the same text whatever the row)."""
    indexes = [g.index for g in getters if g is not None and g.index is not None]
    if not indexes:
        return _no_cells
    return itemgetter(*indexes)


def _no_cells(values: Sequence[str]) -> object:
    return ()


def _live(getter: Getter | None) -> Getter | None:
    """The getter, or None when it gives None whatever the row (no column, no default): a
    row then pays no call for it."""
    if getter is None or (getter.index is None and not getter.default):
        return None
    return getter


def _get(getters: dict[str, Getter], name: str, values: Sequence[str]) -> str | None:
    getter = getters.get(name)
    return None if getter is None else getter(values)


def _quantity(offer: dict[str, Getter], values: Sequence[str], reject: _Reject,
              reserved: int = 0) -> int | None:
    """The quantity the row publishes: its stock less the ``reserved`` units (see
    ``syncer.planning.reservations``) and the safety stock, at most ``max_quantity``, never
    below 0."""
    raw = offer["stock"](values)
    if raw is None:
        reject("stock", None, "a stock count of 0 or more")
        return None
    try:
        stock = parse_count(raw)
    except BadValue as exc:
        reject("stock", raw, exc.expected.replace("whole number", "stock count"))
        return None
    safety = 0
    raw = _get(offer, "safety_quantity", values)
    if raw is not None:
        try:
            safety = parse_count(raw)
        except BadValue as exc:
            reject("safety_quantity", raw, exc.expected)
            return None
    quantity = max(0, stock - reserved - safety)
    raw = _get(offer, "max_quantity", values)
    if raw is not None:
        try:
            quantity = min(quantity, parse_count(raw))
        except BadValue as exc:
            reject("max_quantity", raw, exc.expected)
            return None
    return quantity


def _ignore(field_name: str, value: str | None, expected: str, store: str | None = None
            ) -> None:
    """A reject for cells already checked (and reported) once."""


class _Reject(Protocol):
    def __call__(self, field_name: str, value: str | None, expected: str,
                 store: str | None = None) -> None: ...


StoreFields = tuple[Decimal, str, int, str | None, Decimal | None, Decimal | None,
                    tuple[ShippingOption, ...]]


def _store_fields(
    profile: Profile, getters: _StoreGetters, values: Sequence[str], price_text: str,
    reject: _Reject,
) -> StoreFields | None:
    mapping = getters.mapping
    store = mapping.store
    name = store.name
    ok = True

    def amount(field_name: str, text: str | None, positive: bool = True) -> Decimal | None:
        nonlocal ok
        if text is None:
            return None
        try:
            return parse_amount(text, positive=positive)
        except BadValue as exc:
            reject(field_name, text, exc.expected, name)
            ok = False
            return None

    price = amount("price", price_text)

    currency = store.currency or "EUR"
    raw = getters.currency(values) if getters.currency else None
    if raw is not None and raw.upper() != currency:
        reject("currency", raw, f"{currency}, the currency of the {store.locale} market", name)
        ok = False

    warranty = 0
    raw = getters.warranty(values) if getters.warranty else None
    minimum = store.warranty_min_months
    if raw is None:
        reject("warranty", None, f"a warranty of at least {minimum} months", name)
        ok = False
    else:
        try:
            warranty = parse_count(raw)
        except BadValue:
            reject("warranty", raw, f"a whole number of months, at least {minimum}", name)
            ok = False
        else:
            if warranty < minimum:
                reject("warranty", raw, f"a warranty of at least {minimum} months", name)
                ok = False

    comment = getters.comment(values) if getters.comment else None
    if comment is not None and len(comment) > MAX_COMMENT:
        reject("comment", comment, f"at most {MAX_COMMENT} characters (found {len(comment)})",
               name)
        ok = False
    elif comment is not None and (bad := _BAD_TEXT.search(comment)):
        reject("comment", comment, f"text without control characters (found "
                                   f"U+{ord(bad.group()):04X})", name)
        ok = False

    min_price = max_price = None
    if getters.min_price is not None:
        min_price = amount("min_price", getters.min_price(values))
    if getters.max_price is not None:
        max_price = amount("max_price", getters.max_price(values))
    if price is not None:
        if max_price is not None and price > max_price:
            reject("max_price", str(max_price), f"at least the price {price} (above max_price "
                                                "the listing is not online)", name)
            ok = False
        if min_price is not None and min_price > price:
            reject("min_price", str(min_price), f"at most the price {price}", name)
            ok = False
        elif min_price is not None and store.backpricer_band \
                and price > min_price * BACKPRICER_BAND:
            lowest = (price / BACKPRICER_BAND).quantize(_CENT, rounding=ROUND_CEILING)
            reject("min_price", str(min_price),
                   f"between {lowest} and the price {price}: Back Market's BackPricer keeps "
                   f"the price at most {BACKPRICER_BAND} x min_price "
                   "(INVALID_BACKPRICER_RANGE)", name)
            ok = False

    shipping: list[ShippingOption] = []
    for number, option in getters.shipping:
        carrier = _get(option, "shipper", values)
        if carrier is None:
            continue
        shipper = profile.shipper(carrier)
        if shipper is None:
            reject(f"shipper_{number}", carrier, "a carrier of the carrier table or a Back "
                                                 "Market shipper value", name)
            ok = False
            continue
        cost = amount(f"shipping_price_{number}", _get(option, "price", values) or "",
                      positive=False)
        delay_text = _get(option, "delay", values)
        delay = None
        if delay_text is None:
            reject(f"shipping_delay_{number}", None, "a shipping delay in hours", name)
            ok = False
        else:
            try:
                delay = parse_count(delay_text)
            except BadValue:
                reject(f"shipping_delay_{number}", delay_text, "a whole number of hours", name)
                ok = False
        if cost is not None and delay is not None:
            shipping.append(ShippingOption(shipper, cost, delay))

    if not ok or price is None:
        return None
    return price, currency, warranty, comment, min_price, max_price, tuple(shipping)
