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
from typing import Any, Final, NamedTuple

import structlog

from syncer.backmarket.client import (
    MAX_BATCH_LINES,
    BackMarketClient,
    SentLine,
    TaskOutcome,
    TaskReport,
    task_outcomes,
)
from syncer.backmarket.limits import SkuBudget
from syncer.config.settings import StoreSettings
from syncer.core.crashpoints import crashpoint
from syncer.core.offers import (
    BATCH_ONLY_FIELDS,
    FIELDS,
    Published,
    ShippingOption,
    parse_shipping,
    sku_key,
)
from syncer.core.snapshot import Ack, Failure, SnapshotEntry
from syncer.errors import (
    ApiError,
    FatalApiError,
    OfferError,
    OutcomeUnknown,
    RetriableError,
    StateError,
)
from syncer.planning.diff import LOOKUP_BATCH, Change, StorePlan
from syncer.publish.reconcile import observed
from syncer.state.store import StateStore

log = structlog.get_logger("syncer.publish.publisher")

F: Final = {name: i for i, name in enumerate(FIELDS)}
# Consecutive requests that still fail after their retries before the run gives up.
MAX_CONSECUTIVE_UNAVAILABLE: Final = 5


@dataclass
class PublishResult:
    store: str
    counts: dict[str, int] = field(default_factory=lambda: {
        "created": 0, "updated": 0, "zeroed": 0, "retried": 0, "failed": 0,
        "already_published": 0, "in_flight": 0, "queued": 0,
        "unreachable": 0,  # of the failed: Back Market not reached (sent again next run)
        "reused": 0, "resolved": 0})  # of the confirmed: what Back Market did otherwise
    failures: list[Failure] = field(default_factory=list)
    # In plain words, what Back Market did other than asked ("reused listing 1234 (SKU
    # OLD-1) for NEW-1"): the offer is confirmed, the seller should know.
    notices: list[str] = field(default_factory=list)
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
        on_task: Callable[[dict[str, Any], TaskReport], None] = lambda _task, _report: None,
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
        # (new SKU, old SKU, listing ids) of the listings reused in the batch being settled
        self._reused: list[tuple[str, str, set[str]]] = []

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
                snapshot = self.state.offers.snapshot_entries(self.store.name,
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
        sent = 0
        for file in batch_files(send, send_deee=self.store.send_deee, extra=self.extra_columns):
            for start in range(0, len(file.changes), self.batch_rows):
                if self.stop():
                    self._refund(len(send) - sent)  # taken for batches not sent
                    self._defer(deferred, result)
                    raise _Interrupted
                end = start + self.batch_rows
                self._send_batch(BatchFile(file.columns, file.changes[start:end],
                                           file.rows[start:end]), result)
                sent += len(file.changes[start:end])
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
        if confirmed is None and change.action == "zero":
            # Its snapshot entry went since the plan was made (the old SKU of a listing Back
            # Market reused, a listing reconciliation found gone): nothing to take offline,
            # and a batch row would create or zero whatever holds the SKU now.
            result.counts["already_published"] += 1
            self.progress(1)
            return None
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
    def _send_batch(self, file: BatchFile, result: PublishResult) -> None:
        self._keep_lease()
        columns, changes, rows = file
        offers = {c.key: [c.sku, c.source_hash, *c.target] for c in changes}
        batch_id = self.state.batches.add(self.store.name, offers)
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
            self.state.batches.remove(batch_id)
            self._refund(len(changes))  # the whole batch was refused
            for change in changes:
                self._fail(change, exc, result)
            return
        except RetriableError as exc:
            self.state.batches.remove(batch_id)  # refused before processing: nothing landed
            self._refund(len(changes))
            self._defer(list(changes), result, f"Back Market refused the batch ({exc.message})")
            self._unavailable_once(None, exc, result)
            return
        self.state.batches.set_task(batch_id, task_id)
        crashpoint("batch:after-task-id")
        self.log.info("batch sent", task_id=task_id, offers=len(changes))
        self._settle(batch_id, task_id, offers, result, changes)

    def settle_batches(self, result: PublishResult) -> set[str]:
        """Resolve batches an earlier run left in flight. Returns SKU keys still in flight."""
        in_flight: set[str] = set()
        unknown: list[tuple[int, dict[str, list[Any]]]] = []
        for batch_id, task_id, offers in self.state.batches.pending(self.store.name):
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
        if task.get("action_status") != 9:
            reason = task.get("last_action_error") or f"task {task_id} failed"
            # The task as a whole failed: no offer was refused, none counts to quarantine.
            failures = [Failure(v[0], f"batch task {task_id} failed: {reason}",
                                attempted=tuple(v[2:]), refused=False) for v in offers.values()]
            self.state.offers.record_failures(self.store.name, failures)
            result.counts["failed"] += len(failures)
            result.failures.extend(failures)
            self.state.batches.remove(batch_id)
            return True
        lines = self._sent_lines(offers)
        self._reused = []
        report = task_outcomes(task, lines)
        self.on_task(task, report)
        crashpoint("batch:before-acks")
        acks: list[Ack] = []
        failures = []
        # What the result leaves open: a line it does not report, a success to check on the
        # listing it names (tied by its row alone, or showing another listing's SKU), a
        # success without its listing id.
        absent: list[str] = []
        check: dict[str, TaskOutcome] = {}
        for key, (sku, source_hash, *target) in offers.items():
            outcome = report.outcomes.get(key)
            published = tuple(target)
            if outcome is None:
                absent.append(key)
            elif not outcome.ok:
                failures.append(Failure(sku, outcome.message or "rejected",
                                        code=outcome.code or "task-error", attempted=published))
            elif outcome.weak or not outcome.listing_id:
                check[key] = outcome
            else:
                acks.append(Ack(sku, published, outcome.listing_id, source_hash))
                self._note_product(result, sku, published, outcome.product_id)
        acks += self._check_reported(offers, check, absent, result)
        found, missing = self._find_open(offers, absent, report, result)
        acks += found
        untied = report.untied_errors()
        for key in missing:
            sku, _, *target = offers[key]
            message = f"not reported by batch task {task_id} and not found as sent"
            if untied:  # Back Market's own words, though it did not say for which line
                message += "; the task reported errors for lines it did not name: " + \
                    "; ".join(untied)
            failures.append(Failure(sku, message, attempted=tuple(target), refused=False))
        stale = self.state.offers.record_acks(self.store.name, acks,
                                              sent_at=self.state.batches.sent_at(batch_id))
        if stale:
            late = {sku_key(ack.sku) for ack in stale}
            acks = [ack for ack in acks if sku_key(ack.sku) not in late]
            missing_late = self._read_back(stale, task_id)
            self.progress(len(stale) - len(missing_late))
            failures += missing_late
        if failures:
            self.state.offers.record_failures(self.store.name, failures)
        self._retire(self._reused, offers, {sku_key(ack.sku) for ack in acks})
        self.state.batches.remove(batch_id)
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
                      failed=len(failures), read_back=len(check) + len(absent))
        return True

    def _sent_lines(self, offers: Mapping[str, list[Any]]) -> list[SentLine]:
        """The batch's lines in the order they were sent, with the listing each one
        updates when the snapshot knows it: what ties the task's entries to them."""
        known = self.state.offers.snapshot_entries(self.store.name, list(offers))
        return [SentLine(sku, row, target[F["ean"]],
                         entry.listing_id if (entry := known.get(key)) else None)
                for row, (key, (sku, _, *target)) in enumerate(offers.items(), start=1)]

    def _check_reported(self, offers: Mapping[str, list[Any]], check: dict[str, TaskOutcome],
                        absent: list[str], result: PublishResult) -> list[Ack]:
        """Successes to see on their listing before confirming: the listing the task names
        must carry what was sent (its product may be one Back Market resolved it to). What
        does not is added to ``absent``, read by its SKU like a line the task left out."""
        acks = []
        by_sku = [key for key, outcome in check.items() if not outcome.listing_id]
        listings = self.client.find_listings([offers[key][0] for key in by_sku]) \
            if by_sku else {}
        for key, outcome in check.items():
            sku, source_hash, *target = offers[key]
            published = tuple(target)
            listing = listings.get(key) if not outcome.listing_id else \
                self._listing_by_id(outcome.listing_id)
            if not outcome.weak:
                # Back Market said this very SKU succeeded, without its listing id: confirmed,
                # the listing only tells its id.
                acks.append(Ack(sku, published, None if listing is None else str(listing["id"]),
                                source_hash))
                continue
            if listing is None or _answers_another(listing, key, offers) or not listing_matches(
                    listing, published, self.store, products=(outcome.product_id,)):
                absent.append(key)
                continue
            acks.append(Ack(sku, published, str(listing["id"]), source_hash))
            self._note_reuse(result, sku, listing)
            self._note_product(result, sku, published, listing.get("product_id"))
        return acks

    def _find_open(self, offers: Mapping[str, list[Any]], absent: Sequence[str],
                   report: TaskReport, result: PublishResult) -> tuple[list[Ack], list[str]]:
        """Lines the result leaves open, read from the listings: by their SKU, then among
        the listings of successes the task tied to no line (Back Market may have put a new
        SKU on an existing listing of the same product and grade). Returns the
        confirmations and the lines not found as sent."""
        if not absent:
            return [], []
        listings = self.client.find_listings([offers[key][0] for key in absent])
        acks, left = [], []
        for key in absent:
            sku, source_hash, *target = offers[key]
            listing = listings.get(key)
            if listing is not None and listing_matches(listing, tuple(target), self.store):
                acks.append(Ack(sku, tuple(target), str(listing["id"]), source_hash))
            else:
                left.append(key)
        ids = dict.fromkeys(o.listing_id for o in report.untied if o.ok and o.listing_id)
        others = [self._listing_by_id(listing_id) for listing_id in ids if listing_id] \
            if left else []
        candidates = list({str(listing["id"]): listing for listing in others
                           if listing is not None
                           and not _answers_another(listing, "", offers)}.values())
        matches = {key: [listing for listing in candidates
                         if listing_matches(listing, tuple(offers[key][2:]), self.store)]
                   for key in left} if candidates else {}
        missing = []
        for key in left:
            sku, source_hash, *target = offers[key]
            found = matches.get(key, [])
            # Only a listing no other open line matches, and the only one this line matches.
            if len(found) == 1 and sum(found[0] in m for m in matches.values()) == 1:
                acks.append(Ack(sku, tuple(target), str(found[0]["id"]), source_hash))
                self._note_reuse(result, sku, found[0])
            else:
                missing.append(key)
        return acks, missing

    def _retire(self, reused: Sequence[tuple[str, str, set[str]]], offers: Mapping[str, Any],
                confirmed: set[str]) -> None:
        """A listing Back Market reused now serves the new SKU: the old SKU's snapshot
        entries that point at it (in this store and the stores sharing its quantity) are
        forgotten, or a zero of the old SKU would take the new offer offline."""
        for sku, shown, ids in reused:
            key = sku_key(shown)
            if key in offers or sku_key(sku) not in confirmed:
                continue  # the old SKU is answered in this batch, or the new one not taken
            for store in (self.store.name, *self.siblings):
                entry = self.state.offers.snapshot_entries(store, [key]).get(key)
                if entry is not None and entry.listing_id in ids:
                    self.state.offers.forget(store, [shown])
                    self.log.info("old SKU of a reused listing forgotten", store=store,
                                  sku=shown, listing_id=entry.listing_id)

    def _listing_by_id(self, listing_id: str) -> dict[str, Any] | None:
        try:
            return self.client.get_listing(listing_id)
        except OfferError as exc:
            if exc.status in (400, 404):
                return None
            raise

    def _note_reuse(self, result: PublishResult, sku: str, listing: Mapping[str, Any]) -> None:
        shown = str(listing.get("sku") or "")
        if sku_key(shown) == sku_key(sku):
            return
        number = listing.get("listing_id") or listing.get("id")
        self._reused.append((sku, shown, {str(listing.get(name)) for name in ("id", "listing_id")
                                          if listing.get(name) is not None}))
        note = f"Back Market reused listing {number} (SKU {shown}) for {sku}"
        result.notices.append(note)
        result.counts["reused"] += 1
        self.log.warning("Back Market reused a listing", sku=sku, listing_sku=shown,
                         listing_id=number, notice=note)

    def _note_product(self, result: PublishResult, sku: str, target: Published,
                      product: Any) -> None:
        sent = target[F["product_id"]]
        if sent is None or product is None or str(product) == sent:
            return
        note = f"Back Market resolved product {sent} to {product} for {sku}"
        result.notices.append(note)
        result.counts["resolved"] += 1
        self.log.warning("Back Market resolved a product", sku=sku, sent=sent,
                         product_id=str(product), notice=note)

    def _read_back(self, stale: Sequence[Ack], task_id: int) -> list[Failure]:
        """Offers a batch confirmed after a newer confirmation of their listing (another
        store's real-time update while the task waited): Back Market applied the two in an
        order nobody knows, so what its listings show now becomes the snapshot. Returns the
        offers it no longer shows (sent again next run)."""
        listings = self.client.find_listings([ack.sku for ack in stale])
        seen, missing = [], []
        for ack in stale:
            listing = listings.get(sku_key(ack.sku))
            if listing is None and ack.listing_id:  # a listing Back Market reused
                listing = self._listing_by_id(ack.listing_id)
            if listing is None:
                missing.append(Failure(ack.sku, f"confirmed by batch task {task_id} after a "
                                       "newer update, then not found", attempted=ack.published,
                                       refused=False))
            else:
                seen.append(Ack(ack.sku, observed(listing, self.store.locale, ack.published,
                                                  confirmed=True),
                                str(listing["id"]), None))
        self.state.offers.record_observed(self.store.name, seen)
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
            self.state.offers.record_acks(self.store.name, acks)
            self.state.batches.remove(batch_id)
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
        self.state.queue.enqueue(self.store.name, [(c.sku, reason) for c in changes])
        result.counts["queued"] += len(changes)
        self.progress(len(changes))
        self.log.info("queued for the next run", offers=len(changes), reason=reason)

    # --- outcomes -------------------------------------------------------------------------
    def _ack(self, change: Change, listing_id: str | None, result: PublishResult) -> None:
        self.state.offers.record_acks(
            self.store.name, [Ack(change.sku, change.target, listing_id, change.source_hash)])
        result.count_ack(change)
        self.progress(1)

    def _fail(self, change: Change, exc: ApiError, result: PublishResult,
              refused: bool = True) -> None:
        """The offer failed: refused by Back Market, or (``refused=False``) Back Market could
        not be reached for it, which never counts toward its quarantine."""
        failure = Failure(change.sku, exc.message, code=exc.code or str(exc.status or ""),
                          request_id=exc.request_id, attempted=change.target, refused=refused)
        self.state.offers.record_failures(self.store.name, [failure])
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


def _answers_another(listing: Mapping[str, Any], key: str, offers: Mapping[str, Any]) -> bool:
    """The listing shows the SKU of another line of the batch: it answers that line (two
    lines alike, a row counted differently), whatever the values it shares with this one."""
    shown = sku_key(str(listing.get("sku") or ""))
    return shown != key and shown in offers


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


class BatchFile(NamedTuple):
    """One batch CSV: its columns, the changes it carries and their rows, in that order."""

    columns: list[str]
    changes: list[Change]
    rows: list[dict[str, str]]


def batch_row(change: Change, *, send_deee: bool,
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The batch row of a change: every field of the target that has a value (values are
    absolute), plus ``extra`` columns (a product proposal's content). A field without a
    value has no cell at all: what Back Market does with an empty cell is unknown (clear
    the field, keep it, refuse the row), so a row never carries one."""
    target = change.target
    row = {"sku": change.sku}
    for name in BATCH_COLUMNS[1:] + (("deee",) if send_deee else ()):
        value = target[F[name]]
        if value is not None and str(value) != "":
            row[name] = str(value)
    for number, option in enumerate(parse_shipping(_text(target[F["shipping"]])), start=1):
        row[f"shipper_{number}"] = option.shipper
        row[f"shipping_price_{number}"] = f"{option.price:.2f}"
        row[f"shipping_delay_{number}"] = str(option.delay_hours)
    for name, value in (extra or {}).items():
        if value != "":
            row[name] = value
    return row


def batch_files(changes: Sequence[Change], *, send_deee: bool,
                extra: Mapping[str, Mapping[str, str]] | None = None) -> list[BatchFile]:
    """The batch CSVs that carry these changes: rows grouped by the columns they fill, each
    group its own CSV, so that no cell is left empty (see ``batch_row``). Groups come in the
    order of their first change, rows in the order of the changes."""
    extra = extra or {}
    groups: dict[frozenset[str], BatchFile] = {}
    for change in changes:
        row = batch_row(change, send_deee=send_deee, extra=extra.get(change.key))
        file = groups.get(key := frozenset(row))
        if file is None:
            file = groups[key] = BatchFile(list(row), [], [])
        file.changes.append(change)
        file.rows.append(row)
    return list(groups.values())


def listing_matches(listing: Mapping[str, Any], target: Published, store: StoreSettings, *,
                    products: Sequence[Any] = ()) -> bool:
    """Does a listing, as Back Market shows it for the store's country, carry the target?
    Its product is the one sent, or one of ``products``: what Back Market reported it
    resolved the sent one to, for this very line."""
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
        allowed = {target[F["product_id"]], *(str(p) for p in products if p is not None)}
        checks.append((str(listing.get("product_id")) in allowed, True))
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
