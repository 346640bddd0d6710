"""Publication: send one store's plan through the API client and record every outcome.

Order (invariant 8): zeros, then stock changes, then other single-listing updates, then the
batch (new listings and changes only the batch endpoint can make). Every acknowledgement or
error is written to the state as it arrives; the snapshot moves only on a confirmation
(invariant 2). Before sending, each change is compared with the snapshot as it is *now*:
what another store of the same listing already confirmed (quantity is global), or what a
batch left in flight by an interrupted run turned out to do, is not sent again.

The publisher routes each change to a lane: ``realtime`` (single-listing updates) or
``batches`` (batch CSVs and their settlement, with ``readback``), both writing their
outcomes through one ``outcomes.Ledger``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from typing import Any

import structlog

from syncer.backmarket.client import MAX_BATCH_LINES, BackMarketClient
from syncer.backmarket.limits import SkuBudget
from syncer.backmarket.taskresult import TaskReport
from syncer.config.stores import StoreSettings
from syncer.core.offers import BATCH_ONLY_FIELDS, FIELDS, Published
from syncer.core.snapshot import SnapshotEntry
from syncer.errors import ApiError, FatalApiError
from syncer.planning.changes import Change, StorePlan
from syncer.planning.diff import LOOKUP_BATCH
from syncer.publish.batches import BatchLane
from syncer.publish.outcomes import Interrupted, Ledger, PublishResult, Unavailable
from syncer.publish.realtime import RealTimeLane
from syncer.reports.run_results import OfferResult
from syncer.state.store import StateStore

log = structlog.get_logger("syncer.publish.publisher")


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
        on_offer: Callable[[OfferResult], None] | None = None,
    ) -> None:
        self.store = store
        self.state = state
        self.log = log.bind(store=store.name)
        self.ledger = Ledger(store, client, state, budget=budget, renew=renew,
                             progress=progress, stop=stop, log=self.log, on_offer=on_offer)
        self.realtime = RealTimeLane(self.ledger)
        self.batches = BatchLane(self.ledger, siblings=siblings, batch_rows=batch_rows,
                                 poll_seconds=poll_seconds, task_timeout=task_timeout,
                                 clock=clock, extra_columns=extra_columns, on_task=on_task)

    def apply(self, plan: StorePlan) -> PublishResult:
        """Publish a plan: each change by the cheapest route that can carry it. Changes are
        read in sending order a batch at a time, each compared with the snapshot as it is
        now; batch rows are sent as they fill up: memory stays bounded."""
        def body(result: PublishResult) -> None:
            in_flight = self.batches.settle_batches(result)
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
                        self.ledger.check_stop()
                        if not self.realtime.send(change, fields, snapshot.get(change.key),
                                                  batch, result):
                            deferring = True
                            deferred.append(change)
                    if len(batch) >= self.batches.batch_rows and not deferring:
                        self.batches.send(batch, result)
                        batch = []
                if len(deferred) >= LOOKUP_BATCH:
                    self.ledger.defer(deferred, result)
                    deferred = []
            if deferring:
                self.ledger.defer(deferred + batch, result)
            else:
                self.batches.send(batch, result)

        return self._run(body)

    def publish_batch(self, changes: Sequence[Change]) -> PublishResult:
        """Send these changes through the batch endpoint as they are, whatever the snapshot
        says (a product proposal, or its update, travels with its offer's row)."""
        def body(result: PublishResult) -> None:
            in_flight = self.batches.settle_batches(result)
            result.counts["in_flight"] += sum(1 for c in changes if c.key in in_flight)
            self.batches.send([c for c in changes if c.key not in in_flight], result)

        return self._run(body)

    def _run(self, body: Callable[[PublishResult], None]) -> PublishResult:
        """Run a publication; what stops it is recorded in the result, never lost."""
        result = PublishResult(self.store.name)
        try:
            body(result)
        except Interrupted:
            result.interrupted = True
            result.stopped = "interrupted: finished the request in flight and stopped"
            self.log.warning("run interrupted", **{k: v for k, v in result.counts.items() if v})
        except FatalApiError as exc:
            result.stopped, result.fatal = exc.message, exc
            self.log.error("run stopped", reason=exc.message, cf_ray=getattr(exc, "cf_ray", None))
        except Unavailable as exc:
            result.stopped = str(exc)
            self.log.error("run stopped", reason=str(exc))
        except ApiError as exc:  # e.g. a lookup still failing after its retries
            result.stopped = f"stopped on an API error: {exc.message}"
            self.log.error("run stopped", reason=exc.message)
        return result

    def _route(self, change: Change, entry: SnapshotEntry | None, in_flight: set[str],
               result: PublishResult) -> tuple[str, ...] | None:
        """The fields to send (empty: the whole offer, through the batch), or None when the
        change needs no request: in flight, already published, or settled as it is."""
        if change.key in in_flight:
            result.counts["in_flight"] += 1
            self.ledger.tell(change.sku, change.action, "in_flight")
            return None
        confirmed = entry.published if entry is not None else None
        if confirmed is None and change.action == "zero":
            # Its snapshot entry went since the plan was made (the old SKU of a listing Back
            # Market reused, a listing reconciliation found gone): nothing to take offline,
            # and a batch row would create or zero whatever holds the SKU now.
            result.counts["already_published"] += 1
            self.ledger.tell(change.sku, change.action, "already_published")
            self.ledger.progress(1)
            return None
        if confirmed is None:
            return ()
        fields = _changed(confirmed, change.target)
        if fields:
            return fields
        assert entry is not None
        if entry.status != "failed":
            result.counts["already_published"] += 1
            self.ledger.tell(change.sku, change.action, "already_published", entry.listing_id)
            self.ledger.progress(1)
        else:  # a failed attempt whose target is what is already confirmed
            self.ledger.ack(change, entry.listing_id, result)
        return None


def _changed(confirmed: Published, target: Published) -> tuple[str, ...]:
    return tuple(name for name, a, b in zip(FIELDS, confirmed, target, strict=True) if a != b)
