"""What one store's publication came to (``PublishResult``), and the ``Ledger`` its lanes
share: the store, client and state, the hourly budget, the lock lease, the progress display
and the stop signal, and every outcome written to the state as it arrives (invariant 2: the
snapshot moves only on a confirmation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import structlog

from syncer.backmarket.client import BackMarketClient
from syncer.backmarket.limits import SkuBudget
from syncer.config.stores import StoreSettings
from syncer.core.offers import sku_key
from syncer.core.snapshot import Ack, Failure
from syncer.errors import ApiError, FatalApiError, StateError
from syncer.planning.changes import Change
from syncer.publish.price_moves import record_confirmed
from syncer.reports.run_results import OfferResult
from syncer.state.store import StateStore

# Consecutive requests that still fail after their retries before the run gives up.
MAX_CONSECUTIVE_UNAVAILABLE: Final = 5


@dataclass
class PublishResult:
    store: str
    counts: dict[str, int] = field(default_factory=lambda: {
        "created": 0, "updated": 0, "zeroed": 0, "retried": 0, "failed": 0,
        "already_published": 0, "in_flight": 0, "queued": 0,
        "unreachable": 0,  # of the failed: Back Market not reached (sent again next run)
        # of the in flight: a batch whose answer was lost; it may have landed, and the next
        # run checks the listings before anything is sent again
        "unknown": 0,
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
        if self.counts["unreachable"] or self.counts["unknown"]:
            # not a success (nothing of it is known confirmed): the job is due again, like a
            # stopped run, and the exit code is not 0
            return "unreachable"
        return "partial" if self.counts["failed"] else "ok"

    def count_ack(self, change: Change) -> None:
        key = {"zero": "zeroed", "create": "created", "retry": "retried"}.get(
            change.action, "updated")
        self.counts[key] += 1


class Interrupted(Exception):
    """A signal asked the run to stop: the request in flight finished, the rest stays planned."""


class Unavailable(Exception):
    """Back Market failed too many requests in a row, after their retries."""


@dataclass
class Ledger:
    """What the lanes of one store's publication share, and where their outcomes go."""

    store: StoreSettings
    client: BackMarketClient
    state: StateStore
    budget: SkuBudget | None
    renew: Callable[[], None]
    progress: Callable[[int], None]
    stop: Callable[[], bool]
    log: structlog.typing.FilteringBoundLogger
    unavailable: int = 0  # requests failed in a row after their retries
    # Told what became of each offer (the run-results file, syncer/reports/run_results.py),
    # with when the request that decided it went out (``sent_at``) and the POST's request id
    # of the batch being settled (``post_request_id``).
    on_offer: Callable[[OfferResult], None] | None = None
    sent_at: float | None = None
    post_request_id: str | None = None

    def check_stop(self) -> None:
        """Between requests: a signal asked the run to stop; what is unsent stays planned."""
        if self.stop():
            raise Interrupted

    def take(self, lines: int) -> int:
        return lines if self.budget is None else self.budget.take(lines)

    def refund(self, lines: int) -> None:
        if self.budget is not None and lines:
            self.budget.refund(lines)

    def defer(self, changes: Sequence[Change], result: PublishResult,
               reason: str | None = None) -> None:
        """Work that does not fit this run: queued with its reason, first in line next run."""
        if not changes:
            return
        if reason is None:
            limit = self.budget.lines_per_hour if self.budget else 0
            reason = f"the hourly budget of {limit} SKU lines is used up"
        self.state.queue.enqueue(self.store.name, [(c.sku, reason, c.priority) for c in changes])
        for change in changes:
            self.tell(change.sku, change.action, "queued", message=reason)
        result.counts["queued"] += len(changes)
        self.progress(len(changes))
        self.log.info("queued for the next run", offers=len(changes), reason=reason)

    def ack(self, change: Change, listing_id: str | None, result: PublishResult, *,
            request_id: str | None = None, sent_at: float | None = None) -> None:
        self.state.offers.record_acks(
            self.store.name, [Ack(change.sku, change.target, listing_id, change.source_hash)])
        record_confirmed(self.state, self.store.name, [change])
        result.count_ack(change)
        self.tell(change.sku, change.action, "confirmed", listing_id, request_id=request_id,
                  sent_at=sent_at)
        self.progress(1)

    def tell(self, sku: str, action: str | None, outcome: str, listing_id: str | None = None,
             *, task_id: int | None = None, request_id: str | None = None,
             code: str | None = None, message: str | None = None,
             sent_at: float | None = None) -> None:
        if self.on_offer is not None:
            self.on_offer(OfferResult(self.store.name, sku, action, outcome, listing_id,
                                      task_id, request_id, code, message, sent_at,
                                      time.time()))

    def tell_batch(self, task_id: int, by_key: Mapping[str, Change], acks: Sequence[Ack],
                   failures: Sequence[Failure], stale: Sequence[Ack] = ()) -> None:
        """Each line of a settled batch: its POST's time and request id when this run sent
        it (``by_key``), the task id always."""
        if self.on_offer is None:
            return
        ours = bool(by_key)
        sent_at = self.sent_at if ours else None
        request_id = self.post_request_id if ours else None
        missing = {sku_key(f.sku) for f in failures}

        def action(sku: str) -> str | None:
            change = by_key.get(sku_key(sku))
            return None if change is None else change.action

        for ack in acks:
            self.tell(ack.sku, action(ack.sku), "confirmed", ack.listing_id, task_id=task_id,
                      request_id=request_id, sent_at=sent_at)
        for ack in stale:  # confirmed late: the snapshot took what the listing shows
            if sku_key(ack.sku) not in missing:
                self.tell(ack.sku, action(ack.sku), "confirmed", ack.listing_id,
                          task_id=task_id, request_id=request_id, sent_at=sent_at,
                          message="confirmed after a newer update: read back from the listing")
        for failure in failures:
            self.tell(failure.sku, action(failure.sku),
                      "refused" if failure.refused else "failed", task_id=task_id,
                      request_id=failure.request_id or request_id, code=failure.code,
                      message=failure.message, sent_at=sent_at)

    def fail(self, change: Change, exc: ApiError, result: PublishResult,
              refused: bool = True) -> None:
        """The offer failed: refused by Back Market, or (``refused=False``) Back Market could
        not be reached for it, which never counts toward its quarantine."""
        failure = Failure(change.sku, exc.message, code=exc.code or str(exc.status or ""),
                          request_id=exc.request_id, attempted=change.target, refused=refused)
        self.state.offers.record_failures(self.store.name, [failure])
        result.counts["failed"] += 1
        self.tell(change.sku, change.action, "refused" if refused else "unreachable",
                  request_id=failure.request_id, code=failure.code, message=failure.message,
                  sent_at=self.sent_at)
        if not refused:
            result.counts["unreachable"] += 1
        result.failures.append(failure)
        self.progress(1)
        self.log.warning("offer rejected" if refused else "offer not sent: Back Market unreachable",
                         sku=change.sku, action=change.action, error=exc.message,
                         request_id=exc.request_id)

    def unavailable_once(self, change: Change | None, exc: ApiError,
                          result: PublishResult) -> None:
        if change is not None:
            self.fail(change, exc, result, refused=False)
        self.unavailable += 1
        if self.unavailable >= MAX_CONSECUTIVE_UNAVAILABLE:
            raise Unavailable(f"Back Market unavailable for store {self.store.name}: "
                               f"{self.unavailable} requests in a row failed after retries "
                               f"({exc.message})")

    def keep_lease(self) -> None:
        try:
            self.renew()
        except StateError as exc:  # another run took the lock: not one more request
            raise FatalApiError(str(exc)) from None
