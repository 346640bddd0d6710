"""A plan's values: one ``Change`` (what to send for one offer, and why), the ``ChangeLog``
that holds a store's changes in sending order (spilling to disk past a bound), and the
``StorePlan`` of one store with its notices and counts. Pure: no I/O but the spill files.
"""

from __future__ import annotations

import marshal
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice
from operator import itemgetter
from typing import BinaryIO, Final, NamedTuple

from syncer.core.offers import (
    FIELDS,
    Published,
    sku_key,
)

ACTIONS: Final = ("zero", "update", "retry", "create")


FieldChanges = tuple[tuple[str, str | int | None, str | int | None], ...]


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
    # A price pricing moved (syncer/planning/pricing_plan.py): its trace, and what a sale then earns
    # when the move wins a BackBox (money text; None when it does not win).
    pricing: str | None = None
    gain: str | None = None

    @property
    def key(self) -> str:
        return sku_key(self.sku)

    @property
    def field_changes(self) -> FieldChanges:
        return changes_between(None, self.target) if self.changes is None else self.changes

    @property
    def order(self) -> tuple[int, int, str, int, Decimal]:
        """Sending order: priority, then queued ones (oldest first), then price moves as
        ``pricing.budget_rank`` ranks them (those that win a BackBox, largest gain first);
        ties keep the order in which changes were planned (the catalog's)."""
        return (self.priority, int(self.queued_since is None), self.queued_since or "",
                *self.price_rank)

    @property
    def price_rank(self) -> tuple[int, Decimal]:
        """``pricing.budget_rank`` of the decision that made this change."""
        if self.pricing is None:
            return (2, _NO_GAIN)
        if self.gain is None:
            return (1, _NO_GAIN)
        return (0, -Decimal(self.gain))

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
        elif self.pricing:  # the price as pricing moved it, with its trace
            others = ", ".join(f"{name} {_show(old)} → {_show(new)}"
                               for name, old, new in changes if name != "price")
            parts = f"{others}; {self.pricing}" if others else self.pricing
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
    memory stays bounded whatever the catalog size (there, queued changes are oldest first,
    and price moves ranked, within each block of 10,000 written together)."""

    CLASSES: Final = 8  # priority 0-3, queued or not

    def __init__(self, changes: Iterable[Change] = (), spill_at: int = 50_000) -> None:
        self.spill_at = spill_at
        self._memory: list[Change] = []
        self._sorted = True
        self._folder: str | None = None
        # Closes the spill files and removes their folder: on close, when the log is
        # collected (in a reference cycle too, without the warning a TemporaryDirectory
        # gives then), or at exit.
        self._removal: weakref.finalize[[str, dict[int, BinaryIO]], ChangeLog] | None = None
        self._files: dict[int, BinaryIO] = {}
        self.counts = dict.fromkeys(ACTIONS, 0)
        self._spilled = [0, 0, 0, 0]  # changes written to the files, by Change.priority
        self.offline = 0  # changes that take a live offer to quantity 0, whatever the action
        self._length = 0
        # Changes in memory that ``append_create`` made unqueued: when they are all there
        # is, a spill writes them as they are, in one class (a first plan).
        self._creates = 0
        self.extend(changes)

    def append(self, change: Change) -> None:
        memory = self._memory
        memory.append(change)
        self._sorted = False
        self.counts[change.action] += 1
        if change.changes is not None or change.action == "zero":  # else never offline
            self.offline += takes_offline(change)
        self._length += 1
        if len(memory) > (10_000 if self._folder is not None else self.spill_at):
            self._spill()

    def append_create(self, store: str, sku: str, target: Published, row: int | None,
                      queued_since: str | None, source_hash: int | None) -> None:
        """``append`` of a create of a plan (no field changes, listing, error or pricing:
        never offline), made here: what a first plan appends a million times."""
        memory = self._memory
        memory.append(_new_change(Change, ("create", store, sku, target, None, row, None, None,
                                           queued_since, source_hash, None, None)))
        self._sorted = False
        self.counts["create"] += 1
        self._length += 1
        if queued_since is None:
            self._creates += 1
        if len(memory) > (self.spill_at if self._folder is None else CREATE_BLOCK
                          if self._creates == len(memory) else 10_000):
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
                        block = marshal.load(source)
                    except EOFError:
                        break
                    make = Change._make
                    for fields in block:
                        if len(fields) == 6:  # a create (see _spill)
                            store, sku, target, row, queued, source_hash = fields
                            yield _new_change(Change, (
                                "create", store, sku, target, None, row, None, None, queued,
                                source_hash, None, None))
                        else:
                            yield make(fields)

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

    @property
    def priorities(self) -> list[int]:
        """Changes by ``Change.priority`` (the queue's estimate): counted as they spill, and
        over the ones in memory when asked, so planning pays nothing for it."""
        counts = list(self._spilled)
        for change in self._memory:
            counts[change.priority] += 1
        return counts

    def _spill(self) -> None:
        if self._folder is None:
            self._folder = tempfile.mkdtemp(prefix="syncer-plan-")
            self._removal = weakref.finalize(self, _remove_spill, self._folder, self._files)
        if self._creates == len(self._memory):  # creates of a plan only, none queued
            self._spilled[3] += self._creates
            marshal.dump(list(map(_CREATE_FIELDS, self._memory)), self._file(_CREATE_CLASS))
            self._memory = []
            self._creates = 0
            self._sorted = True
            return
        classes: dict[int, list[Change]] = {}
        for change in self._memory:  # appending keeps the planned order within a class
            # (a create's class, inline: a first plan spills a million of them)
            number = (6 if change.queued_since is not None else 7) \
                if change.action == "create" else _class_of(change)
            classes.setdefault(number, []).append(change)
        for number, changes in classes.items():
            self._spilled[number // 2] += len(changes)
            if number % 2 == 0:  # queued: oldest first
                changes.sort(key=_queued_since)
            elif number == _PRICE_CLASS:  # price moves by budget_rank
                changes.sort(key=_price_rank)
            # One block of plain tuples per class and spill: marshal writes it in one call.
            # A create (no changes, listing, error nor pricing) as its 6 fields that vary.
            marshal.dump([
                _CREATE_FIELDS(c) if c[0] == "create" and c[4] is None
                and c[6] is None and c[7] is None and c[10] is None and c[11] is None
                else tuple(c) for c in changes], self._file(number))
        self._memory = []
        self._creates = 0
        self._sorted = True

    def _file(self, number: int) -> BinaryIO:
        """The spill file of a sending class (``_class_of``), opened on first use."""
        assert self._folder is not None
        handle = self._files.get(number)
        if handle is None:
            handle = self._files[number] = open(  # noqa: SIM115 (kept open while planning)
                os.path.join(self._folder, f"class-{number}"), "ab")
        return handle

    def close(self) -> None:
        if self._removal is not None:
            self._removal()
            self._removal = None
        self._files = {}
        self._folder = None


def _remove_spill(folder: str, files: dict[int, BinaryIO]) -> None:
    for handle in files.values():
        handle.close()
    shutil.rmtree(folder, ignore_errors=True)


def takes_offline(change: Change) -> bool:
    """Whether a change takes an offer that has stock on Back Market to quantity 0: a zero,
    or an update/retry whose quantity goes from some to none (a stock column all 0, a
    max_quantity of 0...). What the mass-zero guard counts."""
    if change.action == "zero":
        return True
    if change.changes is None:
        return False
    return any(name == "quantity" and old and new == 0 for name, old, new in change.changes)


_NO_GAIN: Final = Decimal(0)
# Once spilling, unqueued creates alone are written by blocks of this many: small enough
# that what marshal reads is still in the processor's cache (a first plan, 1M offers:
# 6.1 s with blocks of 10,000, 4.9 s with 500); nothing in them to sort.
CREATE_BLOCK: Final = 500
_new_change: Final = tuple.__new__  # a Change of every field, without _make's Python frame


def _order(change: Change) -> tuple[int, int, str, int, Decimal]:
    return change.order


def _class_of(change: Change) -> int:
    """The sending class (priority x queued or not) of ``Change.order``, computed once."""
    return change.priority * 2 + (change.queued_since is None)


def _queued_since(change: Change) -> str:
    return change.queued_since or ""


_PRICE_CLASS: Final = 2 * 2 + 1  # priority 2, not queued (``_class_of``)
_CREATE_CLASS: Final = 3 * 2 + 1  # priority 3, not queued: a create's
# A create's fields that vary, as ``_spill`` writes them and ``_read`` reads them.
_CREATE_FIELDS: Final = itemgetter(1, 2, 3, 5, 8, 9)


def _price_rank(change: Change) -> tuple[int, Decimal]:
    return change.price_rank


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the seller should know that is deliberately not sent."""

    # "kept-rejected" | "kept-uncertain" | "dropped-from-store" | "withdrawn" |
    # "held-product" | "quarantined" | "price-held" (a lost BackBox pricing did not move)
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
    # Offers Back Market refused too many runs in a row: held back, counted apart from the
    # catalog's rejected rows (a CI gate on rejections must not trip on them).
    quarantined: int = 0
    live: int = 0  # offers live before this plan (for the zero safety share)
    # Why `apply` would stop before sending anything (the mass-zero guard, or the price
    # guard: ``price_stop``, kept so that a saved plan stops as the plan did), if it would.
    safety_stop: str | None = None
    price_stop: str | None = None

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
        counts["quarantined"] = self.quarantined
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


def changes_between(old: Published | None, new: Published) -> FieldChanges:
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
