"""Diff: (valid offers, rejected SKUs, snapshot) -> what one store must send, and why.

Pure: no I/O of its own. ``StoreDiff`` consumes offers one at a time and ``finish`` settles
the SKUs the catalog no longer has; ``diff`` wraps it as the single pure function the design
describes. The snapshot is read through ``SnapshotSource``: a compact index of every SKU (with
the hash of the catalog row each confirmed offer came from), and whole entries fetched in
batches only for the offers that may have changed. The changes go to a ``ChangeLog``, which
moves to a temporary file past a threshold: memory stays bounded whatever the catalog size.

Rules:
- not in the snapshot -> ``create``; confirmed with other values -> ``update`` (each changed
  field, old -> new); failed last time -> ``retry``; same values -> unchanged.
- confirmed for another product (a case variant of the SKU with another EAN or product id):
  a conflict, rejected with its remedy; a listing's product cannot be changed.
- in the snapshot with stock, gone from the catalog -> ``zero``, unless
  - the row is still there but rejected (bad data never zeroes a live offer), or
  - its price for the store is empty: a rejection (unless the store withdraws such offers), or
  - some row of the catalog cannot be tied to a SKU: it may be this one, so nothing is
    zeroed as gone this run, or
  - another store of the same account still lists the SKU: quantity is global, so zeroing
    would take it offline there too. All are reported as notices, not sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from typing import Any, Final, Protocol

from syncer.core.offers import (
    FIELDS,
    QUANTITY,
    Offer,
    Published,
    Rejection,
    shown_rows,
    visible,
)
from syncer.core.snapshot import SnapshotEntry
from syncer.planning.changes import (
    CREATE_BLOCK,
    Change,
    ChangeLog,
    Notice,
    StorePlan,
    changes_between,
)

PRODUCT_ID: Final = FIELDS.index("product_id")


EAN: Final = FIELDS.index("ean")



# Snapshot entries are fetched for this many offers at a time.
LOOKUP_BATCH: Final = 2000


# In a snapshot index: the SKU has an entry but no confirmed offer (a failed creation).
UNCONFIRMED: Final = -1
# Between a SKU key and its value in a snapshot index's pair (never in a valid SKU, and a
# value never holds it: a key is what precedes the last one).
PAIR: Final = "\x1f"


def pair(key: str, value: int | None) -> str:
    """One offer of a snapshot index: the SKU key and the source hash of its confirmed, live
    offer, ``n`` (None: failed, or no source hash) or ``-1`` (``UNCONFIRMED``)."""
    return f"{key}{PAIR}{'n' if value is None else value}"


class SnapshotIndex:
    """The snapshot indexes of the planned stores in one dictionary: every ``pair`` (a SKU key
    and the state of its confirmed offer) -> the bit mask of the stores whose snapshot has
    it. What a million offers cost least to load, to hold and to look up: the stores of a
    row confirmed from it hold the same pair, so a row is one lookup whatever the number of
    stores (no tuple, no int object per offer, each text held once). A row the caller takes
    as unchanged moves its pair to ``taken``: what stays in ``pairs`` once the catalog is
    read is the offers no unchanged row accounts for."""

    def __init__(self) -> None:
        self.pairs: dict[str, int] = {}
        self.taken: dict[str, int] = {}
        self.stores = 0

    def add(self, pairs: Iterable[str]) -> StoreIndex:
        """One more store's pairs; its view of the index."""
        bit = 1 << self.stores
        self.stores += 1
        found = self.pairs
        get = found.get
        count = 0
        for text in pairs:
            found[text] = get(text, 0) | bit
            count += 1
        return StoreIndex(self, bit, count)

    def take(self, text: str) -> None:
        """A row taken as unchanged: its pair is accounted for in every store that has it."""
        mask = self.pairs.pop(text, 0)
        if mask:
            self.taken[text] = mask


class StoreIndex:
    """One store's view of a ``SnapshotIndex``; its SKU keys alone are made on first use (a
    store where rows have no price)."""

    __slots__ = ("_keys", "bit", "count", "shared")

    def __init__(self, shared: SnapshotIndex, bit: int, count: int) -> None:
        self.shared = shared
        self.bit = bit
        self.count = count
        self._keys: dict[str, str] | None = None

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def has(self, text: str) -> bool:
        """Whether this store's snapshot has the pair."""
        shared = self.shared
        return bool((shared.pairs.get(text, 0) | shared.taken.get(text, 0)) & self.bit)

    def keys(self) -> dict[str, str]:
        """SKU key -> the text of its value."""
        if self._keys is None:
            bit = self.bit
            self._keys = {key: value for source in (self.shared.pairs, self.shared.taken)
                          for key, _, value in (text.rpartition(PAIR)
                                                for text, mask in source.items() if mask & bit)}
        return self._keys

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def get(self, key: str, default: Any = None) -> int | Any | None:
        value = self.keys().get(key)
        if value is None:
            return default
        return None if value == "n" else int(value)

    def left(self) -> list[str]:
        """The SKU keys of this store's offers that no unchanged row accounts for, in order."""
        bit = self.bit
        return sorted(text.rpartition(PAIR)[0] for text, mask in self.shared.pairs.items()
                      if mask & bit)


class Pricer(Protocol):
    """Prices offers as the store's pricing rules say
    (``syncer.planning.pricing_plan.StorePricer``): the offer to publish, the trace of a move
    (None: no move) and its gain if it wins."""

    def price(self, offer: Offer, inputs: Any, entry: SnapshotEntry | None
              ) -> tuple[Offer, str | None, str | None]: ...


class SnapshotSource(Protocol):
    """What the diff reads of a store's snapshot."""

    def index(self) -> Iterable[str]:
        """Every offer of the snapshot as a ``pair``: its SKU key and the source hash of its
        confirmed, live offer; None when it failed or has no source hash; ``UNCONFIRMED``
        when nothing of it was ever confirmed."""
        ...

    def entries(self, keys: Iterable[str]) -> dict[str, SnapshotEntry]:
        """Whole entries of these keys (those the snapshot has)."""
        ...

    def live_count(self) -> int:
        """Offers confirmed with stock."""
        ...


class SnapshotMap:
    """A snapshot held in a mapping (tests, small stores)."""

    def __init__(self, entries: Mapping[str, SnapshotEntry]) -> None:
        self._entries = entries

    def index(self) -> list[str]:
        return [pair(key, UNCONFIRMED if entry.published is None else
                     entry.source_hash if entry.status == "live" else None)
                for key, entry in self._entries.items()]

    def entries(self, keys: Iterable[str]) -> dict[str, SnapshotEntry]:
        return {key: self._entries[key] for key in keys if key in self._entries}

    def live_count(self) -> int:
        return sum(1 for entry in self._entries.values() if entry.live)


def as_source(snapshot: Mapping[str, SnapshotEntry] | SnapshotSource) -> SnapshotSource:
    if isinstance(snapshot, Mapping):
        return SnapshotMap(snapshot)
    return snapshot


class StoreDiff:
    """Accumulates one store's diff as offers stream past."""

    def __init__(self, store: str, locale: str, revision: int,
                 snapshot: Mapping[str, SnapshotEntry] | SnapshotSource,
                 queued: Mapping[str, str] | None = None, spill_at: int = 50_000,
                 quarantine_after: int = 0, withdraw_unpriced: bool = False,
                 index: SnapshotIndex | None = None) -> None:
        """``index``: shared with the other stores planned from the same catalog (the
        planner's fast path reads it); else this store's own."""
        self.plan = StorePlan(store, locale, revision, ChangeLog(spill_at=spill_at))
        self.quarantine_after = quarantine_after
        self.withdraw_unpriced = withdraw_unpriced
        # Problems only the snapshot reveals (an empty price on a live offer, a product
        # conflict): rejections of catalog rows, like validation's.
        self.rejections: list[Rejection] = []
        # SKU key -> (row, SKU, price column) of rows whose price for this store is empty.
        self.unpriced_rows: dict[str, tuple[int, str, str]] = {}
        # Rows that could not be tied to a SKU: while there are any, nothing is zeroed as
        # gone from the catalog (any of them may be the missing SKU's row).
        self.uncertain_rows: Sequence[int] = ()
        self.snapshot = as_source(snapshot)
        self.known = (index or SnapshotIndex()).add(self.snapshot.index())
        self._empty = not self.known  # every offer is new: nothing to look up
        self._store = store
        self.queued = queued or {}
        if self._empty and not self.queued:
            # Creates alone, none queued (nothing to sort): written out by small blocks
            # from the start, while still in the processor's cache (see ChangeLog).
            self.plan.changes.spill_at = min(spill_at, CREATE_BLOCK)
        self.seen: set[str] = set()
        # Offers of rows a caller took as unchanged without validating them (see
        # planner._FastPath, which takes their pairs out of the index's ``pairs``).
        self.fast_unchanged = 0
        self.rejected_keys: set[str] = set()
        self._pending: list[tuple[Offer, int | None, Any]] = []
        # Set by the planner when the profile has pricing rules: prices each offer.
        self.pricer: Pricer | None = None

    def confirmed(self, key: str) -> bool:
        """Whether the snapshot has a confirmed offer of this SKU (live or failed since)."""
        return self.known.get(key, UNCONFIRMED) != UNCONFIRMED

    def offer(self, offer: Offer, source_hash: int | None = None, pricing: Any = None
              ) -> None:
        """``pricing``: the row's pricing inputs, for the ``pricer``."""
        key = offer.key
        if key is None:
            key = offer.sku_key
        if self._empty:  # else whether the snapshot has the SKU is asked in batches
            # (nor is the key kept in ``seen``: no offer of an empty snapshot can be gone)
            if self.pricer is not None:
                offer = self.pricer.price(offer, pricing, None)[0]
            target = offer.target
            self.plan.changes.append_create(
                self._store, offer.sku, offer.compute_published() if target is None else target,
                offer.row, self.queued.get(key), source_hash)
            return
        self.seen.add(key)
        self._pending.append((offer, source_hash, pricing))
        if len(self._pending) >= LOOKUP_BATCH:
            self._compare()

    def _compare(self) -> None:
        pending, self._pending = self._pending, []
        entries = self.snapshot.entries(offer.sku_key for offer, _, _ in pending)
        store = self.plan.store
        for offer, source_hash, pricing in pending:
            key = offer.sku_key
            entry = entries.get(key)
            trace = gain = None
            if self.pricer is not None:
                offer, trace, gain = self.pricer.price(offer, pricing, entry)
            target = offer.published()
            queued = self.queued.get(key)
            if entry is None:
                self.plan.changes.append(Change("create", store, offer.sku, target, None,
                                                offer.row, None, None, queued, source_hash))
                continue
            changes = None if entry.published is None else changes_between(entry.published, target)
            if entry.published is not None and (conflict := product_conflict(
                    entry.published, target)) is not None:
                self._conflict(offer, entry, *conflict)
            elif entry.quarantined(target, self.quarantine_after):
                self._quarantine(offer.sku, entry)
            elif entry.status == "failed":
                # Even with nothing left to change, the failure is settled by publishing.
                self.plan.changes.append(Change(
                    "retry", store, offer.sku, target, changes, offer.row, entry.listing_id,
                    entry.last_error, queued, source_hash, trace, gain))
            elif changes:
                self.plan.changes.append(Change(
                    "update", store, offer.sku, target, changes, offer.row, entry.listing_id,
                    None, queued, source_hash, trace, gain))
            else:
                self.plan.unchanged += 1

    def _quarantine(self, sku: str, entry: SnapshotEntry) -> None:
        """Refused too many runs in a row with the same error: stop sending the same thing
        (counted apart from the rejected catalog rows: the row is fine, Back Market refuses it)."""
        self.plan.quarantined += 1
        self.plan.notices.append(Notice(
            "quarantined", self.plan.store, sku,
            f"refused {entry.attempts} runs in a row ({entry.last_error}); not sent again "
            f"until its content changes or `syncer retry {sku}`"))

    def _conflict(self, offer: Offer, entry: SnapshotEntry, name: str, old: str,
                  new: str) -> None:
        """The row names another product than the live listing of its SKU: Back Market
        refuses to change a listing's product, so sending it would fail every run while the
        old offer keeps selling. Rejected offline, with the remedy; the old offer is kept."""
        same = "" if entry.sku == offer.sku else (
            f"Back Market matches SKUs ignoring case: {visible(offer.sku)!r} is its listing "
            f"{visible(entry.sku)!r}, ")
        self.plan.rejected += 1
        self.rejections.append(Rejection(
            offer.row, offer.sku, name, new,
            f"the {name} of the live listing, {old}: {same}and a listing's product cannot be "
            "changed. To sell this product, give it a SKU of its own; to replace the "
            f"listing, take {visible(entry.sku)!r} offline first. The live offer is kept as "
            "published", self.plan.store))

    def unpriced(self, key: str, row: int, sku: str, column: str) -> None:
        """A row whose price for this store is empty: decided at ``finish``, by whether
        its offer is live here."""
        self.unpriced_rows[key] = (row, sku, column)

    def held(self, offer: Offer, reason: str) -> None:
        """An offer that cannot be published yet (its product proposal was rejected): it is
        reported, counted as rejected, and never taken for "gone from the catalog"."""
        self.seen.add(offer.sku_key)
        self.plan.rejected += 1
        self.plan.notices.append(Notice("held-product", self.plan.store, offer.sku, reason))

    def rejected(self, key: str | None) -> None:
        self.plan.rejected += 1
        if key is not None:
            self.rejected_keys.add(key)

    def finish(self, listed_elsewhere: Callable[[str], bool]) -> StorePlan:
        self._compare()
        plan = self.plan
        plan.live = self.snapshot.live_count()
        plan.unchanged += self.fast_unchanged
        seen = self.seen
        gone = (key for key in self.known.left() if key not in seen)
        while batch := list(islice(gone, LOOKUP_BATCH)):
            for key, entry in self.snapshot.entries(batch).items():
                self._gone(key, entry, listed_elsewhere)
        return plan

    def _gone(self, key: str, entry: SnapshotEntry,
              listed_elsewhere: Callable[[str], bool]) -> None:
        plan = self.plan
        if entry.published is None or not entry.published[QUANTITY]:
            return  # never confirmed, or already offline: zero once
        if key in self.rejected_keys:
            plan.notices.append(Notice(
                "kept-rejected", plan.store, entry.sku,
                "row rejected: the live offer is kept as published, not zeroed"))
            return
        unpriced = self.unpriced_rows.get(key)
        if unpriced is not None and not self.withdraw_unpriced:
            row, sku, column = unpriced
            published = dict(zip(FIELDS, entry.published, strict=True))
            plan.rejected += 1
            self.rejections.append(Rejection(
                row, sku, "price", None,
                f"a price in column {column!r}: the offer is live in store {plan.store} "
                f"(quantity {published['quantity']} at {published['price']} "
                f"{published['currency']}) and stays live as published, not zeroed. To "
                f"withdraw such offers from {plan.store}, set empty_price = \"withdraw\" "
                "on the store", plan.store))
            return
        if listed_elsewhere(key):
            plan.notices.append(Notice(
                "dropped-from-store", plan.store, entry.sku,
                "no longer offered in this store but still in another store of the same "
                "listing: not zeroed (quantity is global on Back Market), so it stays on "
                "sale here at its last published price"))
            return
        if self.uncertain_rows:
            plan.notices.append(Notice(
                "kept-uncertain", plan.store, entry.sku,
                "gone from the catalog, but some rows cannot be tied to a SKU (rows "
                f"{shown_rows(self.uncertain_rows)}): not zeroed this run"))
            return
        if unpriced is not None:
            plan.notices.append(Notice(
                "withdrawn", plan.store, entry.sku,
                f"price {unpriced[2]!r} is empty and the store withdraws such offers "
                "(empty_price = \"withdraw\"): quantity set to 0"))
        target = list(entry.published)
        target[QUANTITY] = 0
        if entry.quarantined(tuple(target), self.quarantine_after):
            self._quarantine(entry.sku, entry)
            return
        plan.changes.append(Change(
            "zero", plan.store, entry.sku, tuple(target),
            (("quantity", entry.published[QUANTITY], 0),), None, entry.listing_id,
            entry.last_error if entry.status == "failed" else None, self.queued.get(key)))


def product_conflict(confirmed: Published, target: Published) -> tuple[str, str, str] | None:
    """(field, confirmed, wanted) when the target names another product than the one
    confirmed for the listing: another product id, or, both linked by EAN, another EAN.
    (A switch from one kind of link to the other cannot be judged offline.)"""
    for index, name in ((PRODUCT_ID, "product_id"), (EAN, "ean")):
        old, new = confirmed[index], target[index]
        if old is not None and new is not None:
            return (name, str(old), str(new)) if old != new else None
    return None


def diff(store: str, locale: str, offers: Iterable[Offer], rejected: Iterable[str],
         snapshot: Mapping[str, SnapshotEntry] | SnapshotSource, revision: int = 0,
         listed_elsewhere: Callable[[str], bool] = lambda _key: False,
         queued: Mapping[str, str] | None = None, quarantine_after: int = 0) -> StorePlan:
    """The whole diff of one store as a single pure function."""
    differ = StoreDiff(store, locale, revision, snapshot, queued,
                       quarantine_after=quarantine_after)
    for offer in offers:
        differ.offer(offer)
    for key in rejected:
        differ.rejected(key)
    return differ.finish(listed_elsewhere)


def stock_only(plan: StorePlan,
               snapshot: Mapping[str, SnapshotEntry] | SnapshotSource) -> StorePlan:
    """The stock lane's share of a plan: zeros, and the quantity of offers whose quantity
    changed, nothing else (prices, comments and new listings wait for the full offer run).
    Each target is the confirmed offer with only its quantity changed, so that what the lane
    confirms is exactly what it sent (and it carries no source hash: the row is not all
    published)."""
    source = as_source(snapshot)
    lane = StorePlan(plan.store, plan.locale, plan.revision, unchanged=plan.unchanged,
                     rejected=plan.rejected, quarantined=plan.quarantined, live=plan.live,
                     notices=list(plan.notices))
    changes = iter(plan.changes)
    while batch := list(islice(changes, LOOKUP_BATCH)):
        entries = source.entries(c.key for c in batch if c.action not in ("zero", "create"))
        for change in batch:
            if change.action == "zero":
                lane.changes.append(change)
                continue
            entry = entries.get(change.key)
            if entry is None or entry.published is None:
                continue
            new_quantity = change.target[QUANTITY]
            if entry.published[QUANTITY] == new_quantity:
                continue
            target = list(entry.published)
            target[QUANTITY] = new_quantity
            lane.changes.append(change._replace(
                action="update", target=tuple(target),
                changes=(("quantity", entry.published[QUANTITY], new_quantity),),
                previous_error=None, source_hash=None, pricing=None, gain=None))
    return lane
