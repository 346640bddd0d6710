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

import marshal
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import BinaryIO, Final, NamedTuple, Protocol

from syncer.core.offers import (
    FIELDS,
    QUANTITY,
    Offer,
    Published,
    Rejection,
    shown_rows,
    sku_key,
    visible,
)
from syncer.core.snapshot import SnapshotEntry

PRODUCT_ID: Final = FIELDS.index("product_id")
EAN: Final = FIELDS.index("ean")
ACTIONS: Final = ("zero", "update", "retry", "create")
FieldChanges = tuple[tuple[str, str | int | None, str | int | None], ...]
# Snapshot entries are fetched for this many offers at a time.
LOOKUP_BATCH: Final = 2000
# In a snapshot index: the SKU has an entry but no confirmed offer (a failed creation).
UNCONFIRMED: Final = -1


class Change(NamedTuple):
    """One offer to send: the action, the target published fields, and what changes.

    ``changes`` is None for a new offer (every field is new: computed when asked for, as a
    million creates need not carry it). ``source_hash`` identifies the catalog row the target
    came from; recorded with the acknowledgement, it lets the next plan skip validating a row
    that has not changed."""

    action: str
    store: str
    sku: str
    target: Published
    changes: FieldChanges | None
    row: int | None = None
    listing_id: str | None = None
    previous_error: str | None = None
    # Queued by an earlier run that ran out of budget: first in line within its priority.
    queued_since: str | None = None
    source_hash: int | None = None

    @property
    def key(self) -> str:
        return sku_key(self.sku)

    @property
    def field_changes(self) -> FieldChanges:
        return _changes(None, self.target) if self.changes is None else self.changes

    @property
    def order(self) -> tuple[int, int, str]:
        """Sending order: priority, then queued ones (oldest first); ties keep the order in
        which changes were planned (the catalog's)."""
        return (self.priority, int(self.queued_since is None), self.queued_since or "")

    @property
    def changed_fields(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.field_changes)

    @property
    def priority(self) -> int:
        """Zeros first, then stock changes, then the rest (invariant 8)."""
        if self.action == "zero":
            return 0
        if self.action == "create" or self.changes is None:
            return 3
        if any(name == "quantity" for name, _, _ in self.changes):
            return 1
        return 2

    def reason(self) -> str:
        if self.action == "zero":
            return "gone from the catalog: quantity set to 0"
        changes = self.field_changes
        if self.changes is None or any(n == "quantity" and old is None
                                       for n, old, _ in changes):  # never confirmed
            t = dict(zip(FIELDS, self.target, strict=True))
            parts = (f"new offer: {t['grade']}, quantity {t['quantity']}, "
                     f"{t['price']} {t['currency']}, warranty {t['warranty_delay']} months")
        else:
            parts = ", ".join(f"{name} {_show(old)} → {_show(new)}"
                              for name, old, new in changes)
        if self.queued_since:
            parts = f"queued since {self.queued_since}; {parts}"
        if self.action == "create":
            return parts
        if self.action == "retry":
            prefix = f"failed last time ({self.previous_error})" if self.previous_error else \
                "failed last time"
            return f"{prefix}; {parts}" if changes else \
                f"{prefix}; the catalog is back to the published values"
        return parts


class ChangeLog:
    """A store's changes, iterated in sending order: by priority, queued ones first (oldest
    first), then in the order they were planned (catalog order). Kept in memory up to
    ``spill_at`` changes; beyond, appended to one temporary file per sending class, so that
    memory stays bounded whatever the catalog size (there, queued changes are oldest first
    within each block of 10,000 written together)."""

    CLASSES: Final = 8  # priority 0-3, queued or not

    def __init__(self, changes: Iterable[Change] = (), spill_at: int = 50_000) -> None:
        self.spill_at = spill_at
        self._memory: list[Change] = []
        self._sorted = True
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._files: dict[int, BinaryIO] = {}
        self.counts = dict.fromkeys(ACTIONS, 0)
        self.offline = 0  # changes that take a live offer to quantity 0, whatever the action
        self._length = 0
        self.extend(changes)

    def append(self, change: Change) -> None:
        self._memory.append(change)
        self._sorted = False
        self.counts[change.action] += 1
        if takes_offline(change):
            self.offline += 1
        self._length += 1
        if len(self._memory) > (10_000 if self._folder is not None else self.spill_at):
            self._spill()

    def extend(self, changes: Iterable[Change]) -> None:
        for change in changes:
            self.append(change)

    def __len__(self) -> int:
        return self._length

    def __bool__(self) -> bool:
        return self._length > 0

    def __iter__(self) -> Iterator[Change]:
        if self._folder is None:
            if not self._sorted:
                self._memory.sort(key=_order)  # stable: planned order within a class
                self._sorted = True
            return iter(list(self._memory))
        self._spill()
        return self._read()

    def _read(self) -> Iterator[Change]:
        for number in range(self.CLASSES):
            handle = self._files.get(number)
            if handle is None:
                continue
            handle.flush()
            with open(handle.name, "rb") as source:
                while True:
                    try:
                        yield Change(*marshal.load(source))
                    except EOFError:
                        break

    def __getitem__(self, index: slice) -> list[Change]:
        if not isinstance(index, slice) or index.step not in (None, 1) or \
                (index.start or 0) < 0 or (index.stop is not None and index.stop < 0):
            raise TypeError("a change log is read in order, by forward slices")
        return list(islice(iter(self), index.start or 0, index.stop))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ChangeLog | list):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def count(self, action: str) -> int:
        return self.counts[action]

    def _spill(self) -> None:
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="syncer-plan-")
        classes: dict[int, list[Change]] = {}
        for change in self._memory:  # appending keeps the planned order within a class
            classes.setdefault(_class_of(change), []).append(change)
        for number, changes in classes.items():
            if number % 2 == 0:  # queued: oldest first
                changes.sort(key=_queued_since)
            handle = self._files.get(number)
            if handle is None:
                handle = self._files[number] = open(  # noqa: SIM115 (kept open while planning)
                    os.path.join(self._folder.name, f"class-{number}"), "ab")
            for change in changes:
                marshal.dump(tuple(change), handle)
        self._memory = []
        self._sorted = True

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files = {}
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def __del__(self) -> None:
        self.close()


def takes_offline(change: Change) -> bool:
    """Whether a change takes an offer that has stock on Back Market to quantity 0: a zero,
    or an update/retry whose quantity goes from some to none (a stock column all 0, a
    max_quantity of 0...). What the mass-zero guard counts."""
    if change.action == "zero":
        return True
    if change.changes is None:
        return False
    return any(name == "quantity" and old and new == 0 for name, old, new in change.changes)


def _order(change: Change) -> tuple[int, int, str]:
    return change.order


def _class_of(change: Change) -> int:
    """The sending class (priority x queued or not) of ``Change.order``, computed once."""
    return change.priority * 2 + (change.queued_since is None)


def _queued_since(change: Change) -> str:
    return change.queued_since or ""


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the seller should know that is deliberately not sent."""

    # "kept-rejected" | "kept-uncertain" | "dropped-from-store" | "withdrawn" |
    # "held-product" | "quarantined"
    kind: str
    store: str
    sku: str
    message: str


@dataclass
class StorePlan:
    """The diff of one store: changes to send, notices, counts."""

    store: str
    locale: str
    revision: int
    changes: ChangeLog = field(default_factory=ChangeLog)
    notices: list[Notice] = field(default_factory=list)
    unchanged: int = 0
    rejected: int = 0
    live: int = 0  # offers live before this plan (for the zero safety share)
    # Why `apply` would stop before sending anything (the mass-zero guard), if it would.
    safety_stop: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.changes, ChangeLog):
            self.changes = ChangeLog(self.changes)

    def count(self, action: str) -> int:
        return self.changes.count(action)

    def summary(self) -> dict[str, int]:
        counts = {action: self.changes.count(action)
                  for action in ("create", "update", "zero", "retry")}
        counts["unchanged"] = self.unchanged
        counts["rejected"] = self.rejected
        return counts

    def zero_share(self) -> float:
        zeros = self.changes.offline
        return zeros / self.live if self.live else (1.0 if zeros else 0.0)

    def zero_stop(self, share: float, allowance: int) -> str | None:
        """Why this plan must not be applied without --force, or None (invariant 5): it takes
        more live offers to quantity 0 than both the share and the absolute allowance let
        through, or every live offer of a store that has several."""
        zeros = self.changes.offline
        if not zeros:
            return None
        whole_store = self.live > 1 and zeros >= self.live
        if not whole_store and (zeros <= allowance or self.zero_share() <= share):
            return None
        gone = self.count("zero")
        how = []
        if gone:
            how.append(f"{gone} gone from the catalog")
        if zeros - gone:
            how.append(f"{zeros - gone} with a quantity of 0 (stock, safety stock or "
                       "max_quantity)")
        plural = "s" if allowance != 1 else ""
        every = "; that is every live offer" if whole_store else ""
        return (f"store {self.store}: the plan would zero {zeros} of {self.live} live offers "
                f"({self.zero_share():.0%}, limit {share:.0%} beyond {allowance} "
                f"offer{plural}{every}: {', '.join(how)}); nothing was sent. Check the "
                "catalog (empty, truncated, wrong file, a stock column all 0, max_quantity 0 "
                "meant as \"no cap\"?) or rerun with --force")


class SnapshotSource(Protocol):
    """What the diff reads of a store's snapshot."""

    def index(self) -> Mapping[str, int | None]:
        """Every SKU key of the snapshot -> the source hash of its confirmed, live offer;
        None when it failed or has no source hash; ``UNCONFIRMED`` when nothing of it was
        ever confirmed."""
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

    def index(self) -> dict[str, int | None]:
        return {key: UNCONFIRMED if entry.published is None else
                entry.source_hash if entry.status == "live" else None
                for key, entry in self._entries.items()}

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
                 quarantine_after: int = 0, withdraw_unpriced: bool = False) -> None:
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
        self.known = self.snapshot.index()
        self.queued = queued or {}
        self.seen: set[str] = set()
        # SKUs a caller took as unchanged without validating them, for every store at once:
        # seen in this store if the snapshot knows them (see planner._FastPath).
        self.fast_rows: set[str] = set()
        self.rejected_keys: set[str] = set()
        self._pending: list[tuple[Offer, int | None]] = []

    def fast_hash(self, key: str) -> int | None:
        return self.known.get(key)

    def offer(self, offer: Offer, source_hash: int | None = None) -> None:
        key = offer.sku_key
        self.seen.add(key)
        if key not in self.known:
            self.plan.changes.append(Change(
                "create", self.plan.store, offer.sku, offer.published(), None, offer.row,
                None, None, self.queued.get(key), source_hash))
            return
        self._pending.append((offer, source_hash))
        if len(self._pending) >= LOOKUP_BATCH:
            self._compare()

    def _compare(self) -> None:
        pending, self._pending = self._pending, []
        entries = self.snapshot.entries(offer.sku_key for offer, _ in pending)
        store = self.plan.store
        for offer, source_hash in pending:
            key = offer.sku_key
            target = offer.published()
            entry = entries.get(key)
            queued = self.queued.get(key)
            if entry is None:
                self.plan.changes.append(Change("create", store, offer.sku, target, None,
                                                offer.row, None, None, queued, source_hash))
                continue
            changes = None if entry.published is None else _changes(entry.published, target)
            if entry.published is not None and (conflict := product_conflict(
                    entry.published, target)) is not None:
                self._conflict(offer, entry, *conflict)
            elif entry.quarantined(target, self.quarantine_after):
                self._quarantine(offer.sku, entry)
            elif entry.status == "failed":
                # Even with nothing left to change, the failure is settled by publishing.
                self.plan.changes.append(Change(
                    "retry", store, offer.sku, target, changes, offer.row, entry.listing_id,
                    entry.last_error, queued, source_hash))
            elif changes:
                self.plan.changes.append(Change(
                    "update", store, offer.sku, target, changes, offer.row, entry.listing_id,
                    None, queued, source_hash))
            else:
                self.plan.unchanged += 1

    def _quarantine(self, sku: str, entry: SnapshotEntry) -> None:
        """Refused too many runs in a row with the same error: stop sending the same thing
        (counted with the rejected offers: Back Market refuses it)."""
        self.plan.rejected += 1
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
        fast = self.fast_rows
        plan.unchanged += sum(1 for key in fast if key in self.known) if fast else 0
        gone = (key for key in self.known if key not in self.seen and key not in fast)
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


def _changes(old: Published | None, new: Published) -> FieldChanges:
    if old is None:
        return tuple((name, None, value) for name, value in zip(FIELDS, new, strict=True)
                     if value is not None)
    if old == new:
        return ()
    return tuple((name, a, b) for name, a, b in zip(FIELDS, old, new, strict=True) if a != b)


def _show(value: str | int | None) -> str:
    if value is None:
        return "(none)"
    text = str(value)
    return repr(text[:40] + "…") if len(text) > 40 else repr(text) if isinstance(value, str) \
        else text


def stock_only(plan: StorePlan,
               snapshot: Mapping[str, SnapshotEntry] | SnapshotSource) -> StorePlan:
    """The stock lane's share of a plan: zeros, and the quantity of offers whose quantity
    changed, nothing else (prices, comments and new listings wait for the full offer run).
    Each target is the confirmed offer with only its quantity changed, so that what the lane
    confirms is exactly what it sent (and it carries no source hash: the row is not all
    published)."""
    source = as_source(snapshot)
    lane = StorePlan(plan.store, plan.locale, plan.revision, unchanged=plan.unchanged,
                     rejected=plan.rejected, live=plan.live, notices=list(plan.notices))
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
                previous_error=None, source_hash=None))
    return lane
