"""Diff: (valid offers, rejected SKUs, snapshot) -> what one store must send, and why.

Pure: no I/O. ``StoreDiff`` consumes offers one at a time (a million offers need not sit in
memory) and ``finish`` settles the SKUs the catalog no longer has. ``diff`` wraps it as the
single pure function the design describes.

Rules:
- not in the snapshot -> ``create``; confirmed with other values -> ``update`` (each changed
  field, old -> new); failed last time -> ``retry``; same values -> unchanged.
- in the snapshot with stock, gone from the catalog -> ``zero``, unless
  - the row is still there but rejected (bad data never zeroes a live offer), or
  - another store of the same account still lists the SKU: quantity is global, so zeroing
    would take it offline there too. Both are reported as notices, not sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from syncer.offers import FIELDS, Offer, Published, sku_key
from syncer.state import SnapshotEntry

QUANTITY: Final = FIELDS.index("quantity")
ACTIONS: Final = ("zero", "update", "retry", "create")


@dataclass(frozen=True, slots=True)
class Change:
    """One offer to send: the action, the target published fields, and what changes."""

    action: str
    store: str
    sku: str
    target: Published
    changes: tuple[tuple[str, str | int | None, str | int | None], ...]
    row: int | None = None
    listing_id: str | None = None
    previous_error: str | None = None
    # Queued by an earlier run that ran out of budget: first in line within its priority.
    queued_since: str | None = None

    @property
    def key(self) -> str:
        return sku_key(self.sku)

    @property
    def order(self) -> tuple[int, bool, str, str]:
        return (self.priority, self.queued_since is None, self.queued_since or "", self.key)

    @property
    def changed_fields(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.changes)

    @property
    def priority(self) -> int:
        """Zeros first, then stock changes, then the rest (invariant 8)."""
        if self.action == "zero":
            return 0
        if "quantity" in self.changed_fields and self.action != "create":
            return 1
        return 2 if self.action in ("update", "retry") else 3

    def reason(self) -> str:
        if self.action == "zero":
            return "gone from the catalog: quantity set to 0"
        if any(n == "quantity" and old is None for n, old, _ in self.changes):  # never confirmed
            t = dict(zip(FIELDS, self.target, strict=True))
            parts = (f"new offer: {t['grade']}, quantity {t['quantity']}, "
                     f"{t['price']} {t['currency']}, warranty {t['warranty_delay']} months")
        else:
            parts = ", ".join(f"{name} {_show(old)} → {_show(new)}"
                              for name, old, new in self.changes)
        if self.queued_since:
            parts = f"queued since {self.queued_since}; {parts}"
        if self.action == "create":
            return parts
        if self.action == "retry":
            prefix = f"failed last time ({self.previous_error})" if self.previous_error else \
                "failed last time"
            return f"{prefix}; {parts}" if self.changes else \
                f"{prefix}; the catalog is back to the published values"
        return parts


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the seller should know that is deliberately not sent."""

    kind: str  # "kept-rejected" | "dropped-from-store" | "held-product"
    store: str
    sku: str
    message: str


@dataclass
class StorePlan:
    """The diff of one store: changes to send, notices, counts."""

    store: str
    locale: str
    revision: int
    changes: list[Change] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    unchanged: int = 0
    rejected: int = 0
    live: int = 0  # offers live before this plan (for the zero safety share)

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def summary(self) -> dict[str, int]:
        counts = {action: 0 for action in ("create", "update", "zero", "retry")}
        for change in self.changes:
            counts[change.action] += 1
        counts["unchanged"] = self.unchanged
        counts["rejected"] = self.rejected
        return counts

    def zero_share(self) -> float:
        zeros = self.count("zero")
        return zeros / self.live if self.live else (1.0 if zeros else 0.0)


class StoreDiff:
    """Accumulates one store's diff as offers stream past."""

    def __init__(self, store: str, locale: str, revision: int,
                 snapshot: Mapping[str, SnapshotEntry],
                 queued: Mapping[str, str] | None = None) -> None:
        self.plan = StorePlan(store, locale, revision)
        self.snapshot = snapshot
        self.queued = queued or {}
        self.seen: set[str] = set()
        self.rejected_keys: set[str] = set()

    def offer(self, offer: Offer) -> None:
        key = offer.sku_key
        self.seen.add(key)
        target = offer.published()
        entry = self.snapshot.get(key)
        if entry is None:
            self.plan.changes.append(Change(
                "create", self.plan.store, offer.sku, target, _changes(None, target),
                row=offer.row))
            return
        changes = _changes(entry.published, target)
        if entry.status == "failed":
            # Even with nothing left to change, the failure is settled by publishing.
            self.plan.changes.append(Change(
                "retry", self.plan.store, offer.sku, target, changes, row=offer.row,
                listing_id=entry.listing_id, previous_error=entry.last_error))
            return
        if changes:
            self.plan.changes.append(Change(
                "update", self.plan.store, offer.sku, target, changes, row=offer.row,
                listing_id=entry.listing_id))
            return
        self.plan.unchanged += 1

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
        plan = self.plan
        for key, entry in self.snapshot.items():
            if entry.live:
                plan.live += 1
            if key in self.seen or entry.published is None:
                continue
            if not entry.published[QUANTITY]:
                continue  # already offline: zero once
            if key in self.rejected_keys:
                plan.notices.append(Notice(
                    "kept-rejected", plan.store, entry.sku,
                    "row rejected: the live offer is kept as published, not zeroed"))
                continue
            if listed_elsewhere(key):
                plan.notices.append(Notice(
                    "dropped-from-store", plan.store, entry.sku,
                    "no longer offered in this store but still in another store of the same "
                    "listing: not zeroed (quantity is global on Back Market)"))
                continue
            target = list(entry.published)
            target[QUANTITY] = 0
            plan.changes.append(Change(
                "zero", plan.store, entry.sku, tuple(target),
                (("quantity", entry.published[QUANTITY], 0),), listing_id=entry.listing_id,
                previous_error=entry.last_error if entry.status == "failed" else None))
        if self.queued:
            plan.changes = [replace(c, queued_since=self.queued.get(c.key))
                            if c.key in self.queued else c for c in plan.changes]
        plan.changes.sort(key=lambda c: c.order)
        return plan


def diff(store: str, locale: str, offers: Iterable[Offer], rejected: Iterable[str],
         snapshot: Mapping[str, SnapshotEntry], revision: int = 0,
         listed_elsewhere: Callable[[str], bool] = lambda _key: False,
         queued: Mapping[str, str] | None = None) -> StorePlan:
    """The whole diff of one store as a single pure function."""
    differ = StoreDiff(store, locale, revision, snapshot, queued)
    for offer in offers:
        differ.offer(offer)
    for key in rejected:
        differ.rejected(key)
    return differ.finish(listed_elsewhere)


def _changes(old: Published | None, new: Published
             ) -> tuple[tuple[str, str | int | None, str | int | None], ...]:
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


def stock_only(plan: StorePlan, snapshot: Mapping[str, SnapshotEntry]) -> StorePlan:
    """The stock lane's share of a plan: zeros, and the quantity of offers whose quantity
    changed, nothing else (prices, comments and new listings wait for the full offer run).
    Each target is the confirmed offer with only its quantity changed, so that what the lane
    confirms is exactly what it sent."""
    lane = StorePlan(plan.store, plan.locale, plan.revision, unchanged=plan.unchanged,
                     rejected=plan.rejected, live=plan.live, notices=list(plan.notices))
    for change in plan.changes:
        if change.action == "zero":
            lane.changes.append(change)
            continue
        entry = snapshot.get(change.key)
        if change.action == "create" or entry is None or entry.published is None:
            continue
        new_quantity = change.target[QUANTITY]
        if entry.published[QUANTITY] == new_quantity:
            continue
        target = list(entry.published)
        target[QUANTITY] = new_quantity
        lane.changes.append(replace(
            change, action="update", target=tuple(target),
            changes=(("quantity", entry.published[QUANTITY], new_quantity),),
            previous_error=None))
    return lane
