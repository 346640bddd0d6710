"""One planning pass: catalog -> mapping -> validation -> diff against the snapshot.

The catalog is read once for every configured store: a SKU's presence in the other stores of
the same account decides whether it may be zeroed (quantity is global). Only the selected
stores are diffed. Reads the catalog and the state; writes nothing.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from hashlib import blake2b
from pathlib import Path
from typing import Any

import structlog

from syncer.catalog.files import CatalogSource, CsvCatalog
from syncer.catalog.sql import sql_catalog
from syncer.config.settings import Settings
from syncer.config.stores import StoreSettings
from syncer.core.offers import QUANTITY, Offer, shown_rows, sku_key
from syncer.planning.diff import PAIR, SnapshotIndex, StoreDiff
from syncer.planning.mapping import CompiledMapping, Profile, compile_mapping, load_profile
from syncer.planning.plan import Plan
from syncer.planning.pricing import read_row
from syncer.planning.pricing_plan import PlanPricing
from syncer.planning.reservations import (
    RESERVING_LINE_STATES,
    reserved_note,
    unshipped_note,
    unshipped_units,
)
from syncer.planning.validation import VALIDATION_VERSION, Validator
from syncer.publish.products import held_eans
from syncer.state.offers import StoreSnapshot
from syncer.state.store import StateStore

log = structlog.get_logger("syncer.pipeline.planner")


def catalog_source(settings: Settings, override: Path | None = None) -> CatalogSource:
    """The configured catalog: a CSV file or a database (``[catalog] url``); ``override``,
    from ``--catalog PATH``, is always a CSV file and wins over either."""
    if override is None and settings.catalog.url is not None:
        return sql_catalog(settings)
    path = override if override is not None else settings.catalog_path()
    return CsvCatalog(path=path, encoding=settings.catalog.encoding,
                      legacy_encoding=settings.catalog.legacy_encoding,
                      delimiter=settings.catalog.delimiter)


def siblings(settings: Settings, store: StoreSettings) -> tuple[str, ...]:
    """Other stores publishing to the same listings (same platform and host)."""
    return tuple(s.name for s in settings.stores
                 if s.name != store.name and s.account == store.account)


def make_plan(settings: Settings, stores: Sequence[StoreSettings], catalog: CatalogSource,
              state: StateStore) -> Plan:
    profile = load_profile(settings.mapping_path())
    # Every configured store, enabled or not, counts for "still listed elsewhere".
    all_stores = list(settings.stores)
    index = SnapshotIndex()  # the planned stores' snapshot indexes, in one (see _FastPath)
    differs = {
        s.name: StoreDiff(s.name, s.locale, state.offers.revision(s.name),
                          StoreSnapshot(state.offers, s.name),
                          {key: at.isoformat(timespec="seconds")
                           for key, (_, _, at) in state.queue.queued(s.name).items()},
                          quarantine_after=settings.limits.quarantine_after,
                          withdraw_unpriced=s.empty_price == "withdraw", index=index)
        for s in stores
    }
    # Offers whose product proposal Back Market rejected wait for new product content.
    held = {s.name: held_eans(state, s.name) for s in stores}
    # Units of pulled, unshipped order lines, per planned store (its account's: stock is
    # global); held back from the stock with orders.reserve_unshipped, else only noted.
    unshipped = unshipped_by_store(stores, state)
    reserved = unshipped if settings.orders.reserve_unshipped else {}
    watched = {name: units for name, units in unshipped.items() if units}
    touched: dict[str, dict[str, int]] = {name: {} for name in watched}  # key -> quantity
    listed: dict[str, set[str]] = {s.name: set() for s in all_stores}
    rejections = []
    uncertain: list[int] = []  # rows that cannot be tied to a SKU
    rows = fast = 0
    with catalog.open() as stream, _collector_paused():
        mapping = compile_mapping(profile, stream.header, all_stores)
        seen: dict[str, tuple[int, str]] = {}
        validator = Validator(mapping, seen, reserved)
        quick = _FastPath(mapping, differs, index, listed, seen,
                          fingerprint(profile, all_stores, stream.header), reserved)
        # Pricing rules (syncer/planning/pricing_plan.py): offers priced by their store's rules.
        prices = PlanPricing(profile, stores, mapping, state, settings, datetime.now(UTC))
        prices.attach(differs)
        quick.reprices = prices.reprices if prices.repricing else None
        priced = bool(prices)
        for row, values in stream.rows:
            rows += 1
            if quick.unchanged(row, values):
                fast += 1
                continue
            result = validator.validate(row, values)
            key = result.key
            if result.rejections:
                rejections.extend(result.rejections)
                if not result.sku_certain:
                    uncertain.append(row)
            if key is not None:
                for name in result.listed_stores:
                    listed[name].add(key)
            source_hash = quick.row_hash(values, key) if result.offers else None
            for offer in result.offers:
                differ = differs.get(offer.store)
                if differ is None:
                    continue
                if watched and offer.sku_key in watched.get(offer.store, ()):
                    touched[offer.store][offer.sku_key] = offer.quantity
                reason = held[offer.store].get(offer.ean or "") \
                    if offer.product_id is None else None
                if reason and not differ.confirmed(offer.sku_key):
                    differ.held(offer, reason)
                else:
                    differ.offer(offer, source_hash, prices.inputs(offer, values, rejections)
                                 if priced else None)
            for name in result.rejected_stores:
                differ = differs.get(name)
                if differ is not None:
                    differ.rejected(key)
            if key is not None and result.sku is not None:
                for name, column in result.unpriced.items():
                    differ = differs.get(name)
                    if differ is not None and name not in result.rejected_stores:
                        differ.unpriced(key, row, result.sku, column)
        description = stream.description
        read_notes = list(stream.notes)
    plans = []
    for store in stores:
        others = siblings(settings, store)

        def elsewhere(key: str, others: tuple[str, ...] = others) -> bool:
            return any(quick.listed_in(key, name, differs, listed) for name in others)

        differ = differs[store.name]
        differ.uncertain_rows = uncertain
        differ.fast_unchanged = quick.everywhere + quick.some[store.name]
        store_plan = differ.finish(elsewhere)
        rejections.extend(differ.rejections)
        share, allowance = settings.zero_limits(store)
        store_plan.safety_stop = store_plan.zero_stop(share, allowance)
        prices.finish(store_plan)
        plans.append(store_plan)
    notes = list(mapping.notes) + read_notes + prices.notes(plans)
    if uncertain:
        notes.append(uncertain_note(uncertain))
    for store in stores:
        units = watched.get(store.name, {})
        planned = touched.get(store.name, {})
        if reserved:
            note = reserved_note(store.name, {key: units[key] for key in planned})
        else:
            note = unshipped_note(store.name, raised_unshipped(
                StoreSnapshot(state.offers, store.name), planned, units))
        if note is not None:
            notes.append(note)
    log.info("planned", rows=rows, unchanged_rows=fast, stores=[s.name for s in stores],
             rejections=len(rejections), uncertain_rows=len(uncertain))
    return Plan(stores=plans, rejections=rejections, notes=notes,
                catalog=description, mapping=str(profile.name))


def unshipped_by_store(stores: Sequence[StoreSettings], state: StateStore
                       ) -> dict[str, dict[str, int]]:
    """Store -> SKU key -> units of its account's pulled lines that still reserve."""
    by_account: dict[str, dict[str, int]] = {}
    for store in stores:
        if store.account not in by_account:
            by_account[store.account] = unshipped_units(
                state.orders.order_line_units(store.account, RESERVING_LINE_STATES))
    return {store.name: by_account[store.account] for store in stores}


def raised_unshipped(snapshot: StoreSnapshot, planned: Mapping[str, int],
                     units: Mapping[str, int]) -> dict[str, int]:
    """SKU key -> unshipped units, of the SKUs whose planned quantity is above the one last
    confirmed (what Back Market lowered when they sold), or that were never confirmed."""
    entries = snapshot.entries(planned) if planned else {}
    raised = {}
    for key, quantity in planned.items():
        entry = entries.get(key)
        confirmed = None if entry is None or entry.published is None else \
            entry.published[QUANTITY]
        if quantity > (confirmed if isinstance(confirmed, int) else 0):
            raised[key] = units[key]
    return raised


def uncertain_note(rows: Sequence[int]) -> str:
    return (f"rows {shown_rows(rows, 20)} cannot be tied to a SKU with certainty (see the "
            "rejections): no offer is zeroed as gone from the catalog this run; fix those "
            "rows to let offers that really left the catalog go offline")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Planning makes millions of small tuples and no reference cycles: the cyclic garbage
    collector would rescan them all, again and again, for nothing (a quarter of the time).
    On the way out, what planning made is handed to the oldest generation as is (freeze,
    then unfreeze: no scan), or the first allocation after would scan it all at once (0.2 s
    for a million offers); it is collected as the oldest generation is, cycles included.
    (Not when something else of the process keeps objects frozen: unfreeze would thaw them.)"""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def fingerprint(profile: Profile, stores: Sequence[StoreSettings], header: Sequence[str]
                ) -> bytes:
    """Everything besides a row's cells that decides what the row publishes: the mapping,
    its value tables, every store's settings, the header, and the validation rules' version.
    A row hashed under another fingerprint is validated again."""
    parts = (VALIDATION_VERSION, repr((
        profile.offer, profile.per_store, profile.shipping, profile.store_overrides,
        sorted(profile.grades.items()), sorted(profile.carriers.items()),
        profile.carrier_fallback, profile.pricing)),
        [s.model_dump_json() for s in stores], list(header))
    return hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=16).digest()


class _FastPath:
    """Rows whose cells hash to what was confirmed for every store are unchanged: they are
    counted without being validated (a million-offer catalog with 1% churn validates 1%).
    A row is unchanged in a store when the ``pair`` of its SKU key and row hash is in the
    store's snapshot index; in a store whose index does not have the SKU at all, when the
    row has no price there (not offered, now or before)."""

    def __init__(self, mapping: CompiledMapping, differs: Mapping[str, StoreDiff],
                 index: SnapshotIndex, listed: dict[str, set[str]],
                 seen: dict[str, tuple[int, str]],
                 key: bytes, reserved: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self.width = len(mapping.header)
        # SKUs with units held back are always validated (few: the unshipped orders), and
        # their row hash carries the units, so a row published with a reservation is not
        # taken as unchanged once the reservation ends.
        self.reserved = [units for units in (reserved or {}).values() if units]
        self.reserved_keys: set[str] = set().union(*self.reserved)
        self.sku = mapping.offer["sku"]
        self.sku_index = self.sku.index
        prices = [(m.store.name, m.fields["price"]) for m in mapping.stores]
        self.selected = [(differs[name].known, price, name)
                         for name, price in prices if name in differs]
        self.index = index
        # The mask of a pair every planned store has.
        self.everyone = 0
        for store_index, _, _ in self.selected:
            self.everyone |= store_index.bit
        # With every planned store's snapshot empty (a first plan), no row can be unchanged.
        self.possible = bool(index.pairs)
        # Rows taken as unchanged in every planned store, and in some stores only (the others
        # do not have them): each store's count of unchanged offers.
        self.everywhere = 0
        self.some = dict.fromkeys(differs, 0)
        # Stores not planned still count for "listed elsewhere": their price cell decides.
        self.others = [(name, price) for name, price in prices if name not in differs]
        self.listed = listed
        self.seen = seen
        # SKU key -> pair of the rows taken as unchanged: seen, and listed, in every planned
        # store whose index has the pair (one dictionary for all stores: a million rows pay
        # one addition each).
        self.rows: dict[str, str] = {}
        self.key = key
        self.keyed = blake2b(digest_size=8, key=key)
        # Rows whose price depends on more than the row (a pricing strategy) are never
        # taken as unchanged.
        self.reprices: Callable[[Sequence[str]], bool] | None = None

    def row_hash(self, values: Sequence[str], key: str | None = None) -> int:
        text = "\x1f".join(values)
        if key is not None and key in self.reserved_keys:
            text += "\x1e" + ",".join(str(units.get(key, 0)) for units in self.reserved)
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"),
                                 digest_size=8, key=self.key).digest()
        return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF

    def unchanged(self, row: int, values: Sequence[str]) -> bool:
        if not self.possible or len(values) != self.width or (
                self.reprices is not None and self.reprices(values)):
            return False
        # the SKU getter and sku_key, inline (a hot path)
        cell = values[self.sku_index].strip() if self.sku_index is not None else ""
        sku = cell or self.sku(values)  # else its default
        if sku is None:
            return False
        key = sku.casefold() if sku.isascii() else sku_key(sku)
        seen = self.seen
        if key in seen or key in self.reserved_keys:
            return False  # a duplicate (validation reports it), or units held back
        # row_hash, inline (no units are held back for this key): a copy of the keyed hash
        # already fed its key block costs less than keying a new one
        hasher = self.keyed.copy()
        hasher.update("\x1f".join(values).encode("utf-8", "surrogatepass"))
        mine = f"{key}{PAIR}{int.from_bytes(hasher.digest()) & 0x7FFF_FFFF_FFFF_FFFF}"
        pairs = self.index.pairs
        mask = pairs.get(mine, 0)
        if mask == self.everyone:  # the common case: confirmed from this row everywhere
            self.index.taken[mine] = pairs.pop(mine)
            self.everywhere += 1
            seen[key] = (row, sku)
            self.rows[key] = mine
            if self.others:
                self._list_others(key, values)
            return True
        matched = []
        for store_index, price, name in self.selected:
            if mask & store_index.bit:
                matched.append(name)
            elif price(values) is not None or key in store_index:
                return False  # offered here, or confirmed from another row
        if not matched:
            return False  # nothing to compare: validate it
        for name in matched:
            self.some[name] += 1
        self.index.take(mine)
        self.seen[key] = (row, sku)
        self.rows[key] = mine
        self._list_others(key, values)
        return True

    def _list_others(self, key: str, values: Sequence[str]) -> None:
        for name, price in self.others:
            if price(values) is not None:
                self.listed[name].add(key)

    def listed_in(self, key: str, store: str, differs: Mapping[str, StoreDiff],
                  listed: dict[str, set[str]]) -> bool:
        """Whether the catalog lists the SKU in that store (for "listed elsewhere")."""
        if key in listed[store]:
            return True
        differ = differs.get(store)
        mine = self.rows.get(key)
        return differ is not None and mine is not None and differ.known.has(mine)




def catalog_offers(settings: Settings, store: StoreSettings, catalog: CatalogSource,
                   not_offered: dict[str, str] | None = None,
                   pricing: dict[str, Any] | None = None) -> dict[str, Offer]:
    """The store's valid offers by SKU key (validated against every store, as planning does,
    so that duplicates and row numbers agree with the plan). ``not_offered``, when given,
    receives the SKU keys the catalog has but does not offer in this store, with why;
    ``pricing``, the row's pricing cells of each offer (``pricing.read_row``)."""
    profile = load_profile(settings.mapping_path())
    offers: dict[str, Offer] = {}
    with catalog.open() as stream:
        mapping = compile_mapping(profile, stream.header, list(settings.stores))
        validator = Validator(mapping)
        getters = next((m.pricing for m in mapping.stores if m.store.name == store.name), {})
        for row, values in stream.rows:
            result = validator.validate(row, values)
            for offer in result.offers:
                if offer.store == store.name:
                    offers[offer.sku_key] = offer
                    if pricing is not None and getters:
                        pricing[offer.sku_key] = read_row(getters, values, row=row,
                                                          sku=offer.sku, store=store.name)[0]
            if not_offered is not None and result.key is not None \
                    and result.key not in offers:
                problems = [r for r in result.rejections if r.store in (None, store.name)]
                not_offered[result.key] = (
                    f"row {row} rejected: {problems[0].field}" if problems
                    else f"row {row} has no price for this store")
    if not_offered is not None:
        for key in offers:
            not_offered.pop(key, None)
    return offers
