"""Publication: send one store's plan through the API client and record every outcome.

Order (invariant 8): zeros, then stock changes, then other single-listing updates, then the
batch (new listings and changes only the batch endpoint can make). Every acknowledgement or
error is written to the state as it arrives; the snapshot moves only on a confirmation
(invariant 2). Before sending, each change is compared with the snapshot as it is *now*:
what another store of the same listing already confirmed (quantity is global), or what a
batch left in flight by an interrupted run turned out to do, is not sent again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice
from typing import Any, Final

import structlog

from syncer.client import MAX_BATCH_LINES, BackMarketClient, task_outcomes
from syncer.config import StoreSettings
from syncer.crashpoints import crashpoint
from syncer.diff import LOOKUP_BATCH, Change, StorePlan
from syncer.errors import (
    ApiError,
    FatalApiError,
    OfferError,
    OutcomeUnknown,
    RetriableError,
    StateError,
)
from syncer.limits import SkuBudget
from syncer.offers import (
    BATCH_ONLY_FIELDS,
    FIELDS,
    Published,
    ShippingOption,
    parse_shipping,
    sku_key,
)
from syncer.reconcile import observed
from syncer.state import Ack, Failure, SnapshotEntry, StateStore

log = structlog.get_logger("syncer.publish")

F: Final = {name: i for i, name in enumerate(FIELDS)}
# Consecutive requests that still fail after their retries before the run gives up.
MAX_CONSECUTIVE_UNAVAILABLE: Final = 5


@dataclass
class PublishResult:
    store: str
    counts: dict[str, int] = field(default_factory=lambda: {
        "created": 0, "updated": 0, "zeroed": 0, "retried": 0, "failed": 0,
        "already_published": 0, "in_flight": 0, "queued": 0,
        "unreachable": 0})  # of the failed: Back Market not reached (sent again next run)
    failures: list[Failure] = field(default_factory=list)
    stopped: str | None = None
    fatal: FatalApiError | None = None  # what stopped it, when Back Market did (401, 403...)

    interrupted: bool = False

    @property
    def outcome(self) -> str:
        if self.interrupted:
            return "interrupted"
        if self.stopped:
            return "stopped"
        if self.counts["unreachable"]:
            return "unreachable"  # not a success: the job is due again, like a stopped run
        return "partial" if self.counts["failed"] else "ok"

    def count_ack(self, change: Change) -> None:
        key = {"zero": "zeroed", "create": "created", "retry": "retried"}.get(
            change.action, "updated")
        self.counts[key] += 1


class Publisher:
    """Publishes the plan of one store. ``renew`` keeps the store's lock lease alive: called
    between requests and task polls, it renews when a renewal is due (``StoreLease.keep``)."""

    def __init__(
        self,
        store: StoreSettings,
        client: BackMarketClient,
        state: StateStore,
        *,
        siblings: Sequence[str] = (),
        budget: SkuBudget | None = None,
        batch_rows: int = MAX_BATCH_LINES - 1,
        poll_seconds: float = 15.0,
        task_timeout: float = 3600.0,
        renew: Callable[[], None] = lambda: None,
        progress: Callable[[int], None] = lambda _n: None,
        stop: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
        extra_columns: Mapping[str, Mapping[str, str]] | None = None,
        on_task: Callable[[dict[str, Any]], None] = lambda _task: None,
    ) -> None:
        self.store = store
        self.client = client
        self.state = state
        self.siblings = tuple(siblings)
        self.budget = budget
        self.batch_rows = batch_rows
        self.poll_seconds = poll_seconds
        self.task_timeout = task_timeout
        self.renew = renew
        self.progress = progress
        self.stop = stop
        self.clock = clock
        # Columns added to the batch rows of some SKUs (key -> column -> value): the product
        # content of a proposal. ``on_task`` sees every finished task (its per-row results).
        self.extra_columns = extra_columns or {}
        self.on_task = on_task
        self.log = log.bind(store=store.name)
        self._unavailable = 0

    # --- entry point ----------------------------------------------------------------------
    def apply(self, plan: StorePlan) -> PublishResult:
        """Publish a plan: each change by the cheapest route that can carry it. Changes are
        read in sending order a batch at a time, each compared with the snapshot as it is
        now; batch rows are sent as they fill up: memory stays bounded."""
        def body(result: PublishResult) -> None:
            in_flight = self.settle_batches(result)
            batch: list[Change] = []
            deferred: list[Change] = []
            deferring = False  # out of budget: the rest waits for the next run
            changes = iter(plan.changes)
            while chunk := list(islice(changes, LOOKUP_BATCH)):
                snapshot = self.state.snapshot_entries(self.store.name,
                                                       [c.key for c in chunk])
                for change in chunk:
                    if deferring:
                        deferred.append(change)
                        continue
                    fields = self._route(change, snapshot.get(change.key), in_flight, result)
                    if fields is None:
                        continue
                    if not fields or BATCH_ONLY_FIELDS.intersection(fields):
                        batch.append(change)
                    else:
                        self._check_stop()
                        if not self._send_single(change, fields, snapshot.get(change.key),
                                                 batch, result):
                            deferring = True
                            deferred.append(change)
                    if len(batch) >= self.batch_rows and not deferring:
                        self._send_batches(batch, result)
                        batch = []
                if len(deferred) >= LOOKUP_BATCH:
                    self._defer(deferred, result)
                    deferred = []
            if deferring:
                self._defer(deferred + batch, result)
            else:
                self._send_batches(batch, result)

        return self._run(body)

    def publish_batch(self, changes: Sequence[Change]) -> PublishResult:
        """Send these changes through the batch endpoint as they are, whatever the snapshot
        says (a product proposal, or its update, travels with its offer's row)."""
        def body(result: PublishResult) -> None:
            in_flight = self.settle_batches(result)
            result.counts["in_flight"] += sum(1 for c in changes if c.key in in_flight)
            self._send_batches([c for c in changes if c.key not in in_flight], result)

        return self._run(body)

    def _send_batches(self, batch: Sequence[Change], result: PublishResult) -> None:
        granted = self._take(len(batch))
        send, deferred = batch[:granted], list(batch[granted:])
        for start in range(0, len(send), self.batch_rows):
            if self.stop():
                self._refund(len(send) - start)  # taken for batches not sent
                self._defer(deferred, result)
                raise _Interrupted
            self._send_batch(send[start:start + self.batch_rows], result)
        self._defer(deferred, result)

    def _run(self, body: Callable[[PublishResult], None]) -> PublishResult:
        """Run a publication; what stops it is recorded in the result, never lost."""
        result = PublishResult(self.store.name)
        try:
            body(result)
        except _Interrupted:
            result.interrupted = True
            result.stopped = "interrupted: finished the request in flight and stopped"
            self.log.warning("run interrupted", **{k: v for k, v in result.counts.items() if v})
        except FatalApiError as exc:
            result.stopped, result.fatal = exc.message, exc
            self.log.error("run stopped", reason=exc.message, cf_ray=getattr(exc, "cf_ray", None))
        except _Unavailable as exc:
            result.stopped = str(exc)
            self.log.error("run stopped", reason=str(exc))
        except ApiError as exc:  # e.g. a lookup still failing after its retries
            result.stopped = f"stopped on an API error: {exc.message}"
            self.log.error("run stopped", reason=exc.message)
        return result

    # --- routing --------------------------------------------------------------------------
    def _route(self, change: Change, entry: SnapshotEntry | None, in_flight: set[str],
               result: PublishResult) -> tuple[str, ...] | None:
        """The fields to send (empty: the whole offer, through the batch), or None when the
        change needs no request: in flight, already published, or settled as it is."""
        if change.key in in_flight:
            result.counts["in_flight"] += 1
            return None
        confirmed = entry.published if entry is not None else None
        if confirmed is None:
            return ()
        fields = _changed(confirmed, change.target)
        if fields:
            return fields
        assert entry is not None
        if entry.status != "failed":
            result.counts["already_published"] += 1
            self.progress(1)
        else:  # a failed attempt whose target is what is already confirmed
            self._ack(change, entry.listing_id, result)
        return None

    # --- single-listing updates -----------------------------------------------------------
    def _send_single(self, change: Change, fields: tuple[str, ...],
                     entry: SnapshotEntry | None, batch: list[Change],
                     result: PublishResult) -> bool:
        """One real-time update. False when the hourly budget has no line left for it."""
        self._keep_lease()
        listing_id = (entry.listing_id if entry else None) or change.listing_id
        taken = 0
        try:
            if listing_id is None:
                found = self.client.find_listing(change.sku)
                listing_id = None if found is None else str(found["id"])
            if listing_id is None:
                if change.action == "zero":
                    # Nothing on Back Market to take offline: the outcome already holds.
                    self.log.warning("zero of a listing Back Market does not have",
                                     sku=change.sku)
                    self._ack(change, None, result)
                else:
                    batch.append(change)  # the listing is gone: create it again
                return True
            body = single_update_body(fields, change.target, entry.published if entry else None,
                                      self.store.currency or "EUR")
            taken = self._take(1)
            if not taken:
                return False
            crashpoint("single:before-request")
            answer = self.client.update_listing(listing_id, body)
            crashpoint("single:after-request")
        except OfferError as exc:
            if exc.status == 404:
                self._refund(taken)  # no listing, no line spent
                if change.action != "zero":
                    batch.append(change)
                    return True
            self._fail(change, exc, result)
            return True
        except RetriableError as exc:
            self._refund(taken)
            self._unavailable_once(change, exc, result)
            return True
        self._unavailable = 0
        self._ack(change, str(answer.get("id") or listing_id), result)
        return True

    # --- batches --------------------------------------------------------------------------
    def _send_batch(self, changes: Sequence[Change], result: PublishResult) -> None:
        self._keep_lease()
        columns, rows = batch_rows(changes, send_deee=self.store.send_deee,
                                   extra=self.extra_columns)
        offers = {c.key: [c.sku, c.source_hash, *c.target] for c in changes}
        batch_id = self.state.add_pending_batch(self.store.name, offers)
        crashpoint("batch:before-post")
        try:
            task_id = self.client.create_batch(columns, rows)
            crashpoint("batch:after-post")
        except OutcomeUnknown as exc:
            # It may have landed: keep it pending; the next run checks the listings first.
            self.log.warning("batch outcome unknown, will be checked before any resend",
                             offers=len(changes), error=exc.message)
            result.counts["in_flight"] += len(changes)
            return
        except OfferError as exc:
            self.state.remove_batch(batch_id)
            self._refund(len(changes))  # the whole batch was refused
            for change in changes:
                self._fail(change, exc, result)
            return
        except RetriableError as exc:
            self.state.remove_batch(batch_id)  # refused before processing: nothing landed
            self._refund(len(changes))
            self._defer(list(changes), result, f"Back Market refused the batch ({exc.message})")
            self._unavailable_once(None, exc, result)
            return
        self.state.set_batch_task(batch_id, task_id)
        crashpoint("batch:after-task-id")
        self.log.info("batch sent", task_id=task_id, offers=len(changes))
        self._settle(batch_id, task_id, offers, result, changes)

    def settle_batches(self, result: PublishResult) -> set[str]:
        """Resolve batches an earlier run left in flight. Returns SKU keys still in flight."""
        in_flight: set[str] = set()
        unknown: list[tuple[int, dict[str, list[Any]]]] = []
        for batch_id, task_id, offers in self.state.pending_batches(self.store.name):
            if task_id is None:
                unknown.append((batch_id, offers))
            elif not self._settle(batch_id, task_id, offers, result, None, wait=0.0):
                in_flight.update(offers)
        if unknown:
            self._settle_unknown(unknown, result)
        return in_flight

    def _settle(self, batch_id: int, task_id: int, offers: dict[str, list[Any]],
                result: PublishResult, changes: Sequence[Change] | None,
                wait: float | None = None) -> bool:
        """Record what a batch task says. An earlier run's task is looked at once
        (``wait=0``): if still running, its offers stay in flight for the next run."""
        try:
            task = self.client.wait_task(
                task_id, poll_seconds=self.poll_seconds,
                timeout_seconds=self.task_timeout if wait is None else wait, clock=self.clock,
                on_poll=self._keep_lease)
        except TimeoutError:
            self.log.warning("task still running; it will be checked next run",
                             task_id=task_id, offers=len(offers))
            result.counts["in_flight"] += len(offers)
            return False
        except OfferError as exc:
            # The task is unknown to Back Market: nothing can be learnt from it.
            self.log.warning("task not found; its offers will be checked on the listings",
                             task_id=task_id, error=exc.message)
            self._settle_unknown([(batch_id, offers)], result)
            return True
        by_key = {c.key: c for c in changes} if changes else {}
        self.on_task(task)
        if task.get("action_status") != 9:
            reason = task.get("last_action_error") or f"task {task_id} failed"
            # The task as a whole failed: no offer was refused, none counts to quarantine.
            failures = [Failure(v[0], f"batch task {task_id} failed: {reason}",
                                attempted=tuple(v[2:]), refused=False) for v in offers.values()]
            self.state.record_failures(self.store.name, failures)
            result.counts["failed"] += len(failures)
            result.failures.extend(failures)
            self.state.remove_batch(batch_id)
            return True
        outcomes = task_outcomes(task)
        crashpoint("batch:before-acks")
        # What the task does not say (an unreported SKU, a success without its listing id)
        # is read from the listings.
        unclear = [sku for key, (sku, _, *_) in offers.items()
                   if key not in outcomes or (outcomes[key].ok and not outcomes[key].listing_id)]
        listings = self.client.find_listings(unclear) if unclear else {}
        acks: list[Ack] = []
        failures = []
        for key, (sku, source_hash, *target) in offers.items():
            outcome = outcomes.get(key)
            published = tuple(target)
            listing = listings.get(key)
            if outcome is None:
                if listing is not None and listing_matches(listing, published, self.store):
                    acks.append(Ack(sku, published, str(listing["id"]), source_hash))
                else:
                    failures.append(Failure(sku, f"not reported by batch task {task_id} and "
                                                 "not found as sent", attempted=published,
                                            refused=False))
            elif outcome.ok:
                listing_id = outcome.listing_id or (None if listing is None
                                                    else str(listing["id"]))
                acks.append(Ack(sku, published, listing_id, source_hash))
            else:
                failures.append(Failure(sku, outcome.message or "rejected",
                                        code="task-error", attempted=published))
        stale = self.state.record_acks(self.store.name, acks,
                                       sent_at=self.state.batch_sent_at(batch_id))
        if stale:
            late = {sku_key(ack.sku) for ack in stale}
            acks = [ack for ack in acks if sku_key(ack.sku) not in late]
            missing = self._read_back(stale, task_id)
            self.progress(len(stale) - len(missing))
            failures += missing
        if failures:
            self.state.record_failures(self.store.name, failures)
        self.state.remove_batch(batch_id)
        for ack in acks:
            change = by_key.get(sku_key(ack.sku))
            if change is not None:
                result.count_ack(change)
            else:
                result.counts["created"] += 1
            self.progress(1)
        result.counts["failed"] += len(failures)
        result.failures.extend(failures)
        self.progress(len(failures))
        self.log.info("batch settled", task_id=task_id, confirmed=len(acks),
                      failed=len(failures))
        return True

    def _read_back(self, stale: Sequence[Ack], task_id: int) -> list[Failure]:
        """Offers a batch confirmed after a newer confirmation of their listing (another
        store's real-time update while the task waited): Back Market applied the two in an
        order nobody knows, so what its listings show now becomes the snapshot. Returns the
        offers it no longer shows (sent again next run)."""
        listings = self.client.find_listings([ack.sku for ack in stale])
        seen, missing = [], []
        for ack in stale:
            listing = listings.get(sku_key(ack.sku))
            if listing is None:
                missing.append(Failure(ack.sku, f"confirmed by batch task {task_id} after a "
                                       "newer update, then not found", attempted=ack.published,
                                       refused=False))
            else:
                seen.append(Ack(ack.sku, observed(listing, self.store.locale, ack.published),
                                str(listing["id"]), None))
        self.state.record_observed(self.store.name, seen)
        self.log.info("late batch confirmations read back from the listings", task_id=task_id,
                      offers=len(stale), not_found=len(missing))
        return missing

    def _settle_unknown(self, batches: Sequence[tuple[int, dict[str, list[Any]]]],
                        result: PublishResult) -> None:
        """Batches whose POST got no answer: what the listings show decides, offer by offer
        (all of them looked up together). Offers not found as sent are dropped from their
        batch; the plan sends them again."""
        listings = self.client.find_listings(
            [sku for _, offers in batches for sku, _, *_ in offers.values()])
        for batch_id, offers in batches:
            acks = []
            for key, (sku, source_hash, *target) in offers.items():
                listing = listings.get(key)
                published = tuple(target)
                if listing is not None and listing_matches(listing, published, self.store):
                    acks.append(Ack(sku, published, str(listing["id"]), source_hash))
            self.state.record_acks(self.store.name, acks)
            self.state.remove_batch(batch_id)
            result.counts["created"] += len(acks)
            self.log.info("unknown batch checked on the listings", found=len(acks),
                          not_found=len(offers) - len(acks))

    def _check_stop(self) -> None:
        """Between requests: a signal asked the run to stop; what is unsent stays planned."""
        if self.stop():
            raise _Interrupted

    # --- the hourly budget and the queue -------------------------------------------------
    def _take(self, lines: int) -> int:
        return lines if self.budget is None else self.budget.take(lines)

    def _refund(self, lines: int) -> None:
        if self.budget is not None and lines:
            self.budget.refund(lines)

    def _defer(self, changes: Sequence[Change], result: PublishResult,
               reason: str | None = None) -> None:
        """Work that does not fit this run: queued with its reason, first in line next run."""
        if not changes:
            return
        if reason is None:
            limit = self.budget.lines_per_hour if self.budget else 0
            reason = f"the hourly budget of {limit} SKU lines is used up"
        self.state.enqueue(self.store.name, [(c.sku, reason) for c in changes])
        result.counts["queued"] += len(changes)
        self.progress(len(changes))
        self.log.info("queued for the next run", offers=len(changes), reason=reason)

    # --- outcomes -------------------------------------------------------------------------
    def _ack(self, change: Change, listing_id: str | None, result: PublishResult) -> None:
        self.state.record_acks(self.store.name,
                               [Ack(change.sku, change.target, listing_id, change.source_hash)])
        result.count_ack(change)
        self.progress(1)

    def _fail(self, change: Change, exc: ApiError, result: PublishResult,
              refused: bool = True) -> None:
        """The offer failed: refused by Back Market, or (``refused=False``) Back Market could
        not be reached for it, which never counts toward its quarantine."""
        failure = Failure(change.sku, exc.message, code=exc.code or str(exc.status or ""),
                          request_id=exc.request_id, attempted=change.target, refused=refused)
        self.state.record_failures(self.store.name, [failure])
        result.counts["failed"] += 1
        if not refused:
            result.counts["unreachable"] += 1
        result.failures.append(failure)
        self.progress(1)
        self.log.warning("offer rejected" if refused else "offer not sent: Back Market unreachable",
                         sku=change.sku, action=change.action, error=exc.message,
                         request_id=exc.request_id)

    def _unavailable_once(self, change: Change | None, exc: ApiError,
                          result: PublishResult) -> None:
        if change is not None:
            self._fail(change, exc, result, refused=False)
        self._unavailable += 1
        if self._unavailable >= MAX_CONSECUTIVE_UNAVAILABLE:
            raise _Unavailable(f"Back Market unavailable for store {self.store.name}: "
                               f"{self._unavailable} requests in a row failed after retries "
                               f"({exc.message})")

    def _keep_lease(self) -> None:
        try:
            self.renew()
        except StateError as exc:  # another run took the lock: not one more request
            raise FatalApiError(str(exc)) from None


class _Unavailable(Exception):
    pass


class _Interrupted(Exception):
    pass


def _changed(confirmed: Published, target: Published) -> tuple[str, ...]:
    return tuple(name for name, a, b in zip(FIELDS, confirmed, target, strict=True) if a != b)


def single_update_body(fields: Sequence[str], target: Published, confirmed: Published | None,
                       currency: str) -> dict[str, Any]:
    """The body of POST /ws/listings/{id}: only what changed, money as strings."""
    body: dict[str, Any] = {}
    for name in fields:
        value = target[F[name]]
        if name == "quantity":
            body["quantity"] = value
        elif name in ("price", "currency"):
            body["price"] = target[F["price"]]
            body["currency"] = target[F["currency"]] or currency
        elif name == "warranty_delay":
            body["warranty_delay"] = value
        elif name in ("comment", "min_price"):
            body[name] = value
        elif name == "shipping":
            new = parse_shipping(_text(value))
            old = parse_shipping(_text(confirmed[F["shipping"]])) if confirmed else ()
            body.update(shipping_fields(new, max(len(new), len(old))))
    return body


def shipping_fields(options: Sequence[ShippingOption], slots: int) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for number in range(1, slots + 1):
        if number <= len(options):
            option = options[number - 1]
            body[f"shipper_{number}"] = option.shipper
            body[f"shipping_price_{number}"] = f"{option.price:.2f}"
            body[f"shipping_delay_{number}"] = option.delay_hours
        else:
            body[f"shipper_{number}"] = None
            body[f"shipping_price_{number}"] = None
            body[f"shipping_delay_{number}"] = None
    return body


BATCH_COLUMNS: Final = (
    "sku", "product_id", "ean", "grade", "quantity", "price", "currency", "warranty_delay",
    "comment", "min_price", "max_price",
)


def batch_rows(changes: Sequence[Change], *, send_deee: bool,
               extra: Mapping[str, Mapping[str, str]] | None = None
               ) -> tuple[list[str], list[dict[str, str]]]:
    """Rows of the batch CSV, every field of the target given (values are absolute), plus
    the ``extra`` columns of some SKUs (a product proposal's content)."""
    columns = list(BATCH_COLUMNS)
    if send_deee:
        columns.append("deee")
    extra = extra or {}
    extra_columns: dict[str, None] = {}
    shipping_slots = 0
    rows = []
    for change in changes:
        target = change.target
        row = {"sku": change.sku}
        for name in columns[1:]:
            value = target[F[name]]
            row[name] = "" if value is None else str(value)
        options = parse_shipping(_text(target[F["shipping"]]))
        shipping_slots = max(shipping_slots, len(options))
        for number, option in enumerate(options, start=1):
            row[f"shipper_{number}"] = option.shipper
            row[f"shipping_price_{number}"] = f"{option.price:.2f}"
            row[f"shipping_delay_{number}"] = str(option.delay_hours)
        for name, value in extra.get(change.key, {}).items():
            extra_columns[name] = None
            row[name] = value
        rows.append(row)
    for number in range(1, shipping_slots + 1):
        columns += [f"shipper_{number}", f"shipping_price_{number}", f"shipping_delay_{number}"]
    columns += [name for name in extra_columns if name not in columns]
    return columns, rows


def listing_matches(listing: dict[str, Any], target: Published, store: StoreSettings) -> bool:
    """Does a listing, as Back Market shows it for the store's country, carry the target?"""
    checks: list[tuple[Any, Any]] = [
        (listing.get("quantity"), target[F["quantity"]]),
        (listing.get("grade"), target[F["grade"]]),
        (_amount(listing.get("price")), _amount(target[F["price"]])),
        (listing.get("currency"), target[F["currency"]]),
        (listing.get("warranty_delay"), target[F["warranty_delay"]]),
        (listing.get("comment") or None, target[F["comment"]]),
        (_amount(listing.get("min_price")), _amount(target[F["min_price"]])),
    ]
    if target[F["product_id"]] is not None:
        checks.append((listing.get("product_id"), target[F["product_id"]]))
    if target[F["max_price"]] is not None:
        checks.append((_amount(listing.get("max_price")), _amount(target[F["max_price"]])))
    return all(a == b for a, b in checks)


def _amount(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def _text(value: str | int | None) -> str | None:
    return None if value is None else str(value)
