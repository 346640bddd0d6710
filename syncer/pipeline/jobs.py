"""The jobs a run does for a store, shared by `apply`, `run`, `daemon` and `reconcile`.

- offers:    publish the store's plan (zeros, stock, other changes, new listings);
- stock:     the stock lane: only quantity changes and zeros, within a share of the budget;
- reconcile: compare what Back Market shows with the snapshot (see ``syncer.publish.reconcile``);
- products:  propose new products (see ``syncer.publish.products``).

The caller opens the state and holds the store's lock; each job records one run in the run
log, whatever happens to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from syncer.backmarket.client import BackMarketClient
from syncer.backmarket.limits import ApiLimits, RateLimiter, SkuBudget
from syncer.backmarket.taskresult import TaskReport
from syncer.backmarket.transport import Transport
from syncer.catalog.files import CatalogSource
from syncer.config.sections import request_deadline
from syncer.config.settings import Settings
from syncer.config.stores import StoreSettings
from syncer.core.snapshot import Ack
from syncer.errors import FatalApiError, SafetyStop, StateError
from syncer.pipeline.planner import catalog_offers, siblings
from syncer.pipeline.progress import ProgressDisplay
from syncer.planning.changes import StorePlan
from syncer.planning.diff import stock_only
from syncer.planning.plan import Plan
from syncer.publish.outcomes import PublishResult
from syncer.publish.products import publish_products
from syncer.publish.publisher import Publisher
from syncer.publish.reconcile import Reconciliation, reconcile
from syncer.state.locks import StoreLease
from syncer.state.offers import StoreSnapshot
from syncer.state.schema import utcnow
from syncer.state.store import StateStore

if TYPE_CHECKING:
    from syncer.alerts.events import StoreTurn
    from syncer.reports.run_results import RunResults

log = structlog.get_logger("syncer.pipeline.jobs")


def build_limits(settings: Settings, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> ApiLimits:
    limits = settings.limits
    return ApiLimits(
        RateLimiter(limits.requests_per_window, limits.window_seconds, clock, sleep),
        RateLimiter(limits.catalog_requests_per_window, limits.window_seconds, clock, sleep),
        limits.catalog_routes,
        backbox=RateLimiter(limits.backbox_requests_per_window, limits.backbox_window_seconds,
                            clock, sleep))


def build_client(settings: Settings, store: StoreSettings,
                 limiter: ApiLimits | None = None, lease: StoreLease | None = None
                 ) -> BackMarketClient:
    """A client for one store. Stores of one account must share one ``limiter``: Back
    Market counts their requests together. Each request, retries included, ends within a
    third of the lock lease, and the store's ``lease`` is kept before every attempt."""
    return BackMarketClient(Transport(
                  store.base_url(), settings.token(store), store.locale, settings.api.user_agent(),
                  store=store.name, timeout=settings.api.timeout_seconds,
                  max_retries=settings.api.max_retries,
                  rate_block_seconds=settings.limits.rate_block_seconds,
                  backoff_base=settings.api.backoff_base_seconds,
                  backoff_cap=settings.api.backoff_cap_seconds,
                  limiter=limiter or build_limits(settings),
                  deadline=request_deadline(settings.limits.lock_lease_seconds),
                  keep_alive=lease_keeper(lease)))


def lease_keeper(lease: StoreLease | None) -> Callable[[], None]:
    """Renews a lock lease when due; a lease another run took stops the store's run before
    its next request (FatalApiError)."""
    def keep() -> None:
        if lease is None:
            return
        try:
            lease.keep()
        except StateError as exc:
            raise FatalApiError(str(exc)) from None

    return keep


@contextmanager
def paced(settings: Settings, state: StateStore
          ) -> Iterator[Callable[[StoreSettings], ApiLimits]]:
    """One limiter per account for a whole command, starting from the pace of the account's
    previous run (kept in the state) so that back-to-back runs do not burst."""
    limiters: dict[str, ApiLimits] = {}

    def limiter_for(store: StoreSettings) -> ApiLimits:
        key = store.budget_key
        if key not in limiters:
            limiters[key] = build_limits(settings)
            limiters[key].seed(state.pace.load(key), time.time())
        return limiters[key]

    try:
        yield limiter_for
    finally:
        for key, limiter in limiters.items():
            state.pace.save(key, limiter.history(time.time()))


def check_zero_share(settings: Settings, plan: Plan, force: bool) -> None:
    """Invariant 5: an empty, truncated or zeroed-out catalog must not take the shop offline.
    Counts every change that takes a live offer to quantity 0, whatever its action; and a
    plan that would move the prices of too many live offers too far stops the same way."""
    if force:
        return
    for store_plan in plan.stores:
        share, allowance = settings.zero_limits(settings.store(store_plan.store))
        stop = store_plan.zero_stop(share, allowance)
        if stop is not None:
            raise SafetyStop(stop, store=store_plan.store)
        if store_plan.price_stop is not None:  # the same guard for prices (pricing_plan)
            raise SafetyStop(store_plan.price_stop, store=store_plan.store)


class LaneBudget(SkuBudget):
    """A lane's share of an account's hourly budget: lines come from both the lane's cap
    and the account's budget, so the lane never starves the full offer runs."""

    def __init__(self, main: SkuBudget, share: float) -> None:
        super().__init__(main.ledger, main.account + "|stock-lane",
                         max(1, int(main.lines_per_hour * share)) if not main.unlimited else 0,
                         main.now)
        self.main = main

    def take(self, lines: int) -> int:
        granted = super().take(lines)
        from_main = self.main.take(granted) if granted else 0
        if from_main < granted:
            super().refund(granted - from_main)
        return from_main

    def refund(self, lines: int) -> None:
        super().refund(lines)
        self.main.refund(lines)


@dataclass
class JobContext:
    """What every job of one command shares."""

    settings: Settings
    state: StateStore
    run_id: str
    limiter_for: Callable[[StoreSettings], ApiLimits]
    leases: dict[str, StoreLease] = field(default_factory=dict)
    progress: Callable[[int], None] = lambda _n: None
    stop: Callable[[], bool] = lambda: False
    now: Callable[[], datetime] = utcnow
    # Told when a store's work is over, whatever became of it (the alerts, syncer/alerts/events.py).
    finished: Callable[[StoreTurn], None] = lambda _turn: None
    # The run-results file being collected (`--results FILE`), if one was asked for.
    results: RunResults | None = None
    # The progress display on a terminal (off by default: `syncer.pipeline.progress`).
    display: ProgressDisplay = field(default_factory=lambda: ProgressDisplay(False))


def publisher_for(ctx: JobContext, store: StoreSettings, client: BackMarketClient, *,
                  lane: bool = False, extra_columns: Mapping[str, Mapping[str, str]] | None = None,
                  on_task: Callable[[dict[str, Any], TaskReport], None] =
                  lambda _task, _report: None) -> Publisher:
    """A publisher for one store, with its account's hourly budget (or the stock lane's share
    of it), its lock lease, and the command's progress display and stop signal."""
    settings = ctx.settings
    budget = SkuBudget(ctx.state.budget, store.budget_key, settings.limits.sku_lines_per_hour,
                       ctx.now)
    if lane:
        budget = LaneBudget(budget, store.stock_budget_share)
    lease = ctx.leases.get(store.name)
    poll = settings.api.task_poll_seconds
    return Publisher(
        store, client, ctx.state, budget=budget, siblings=siblings(settings, store),
        batch_rows=settings.api.batch_rows,
        # A task poll waits no longer than the lease's renewal interval.
        poll_seconds=min(poll, lease.renew_every) if lease else poll,
        task_timeout=settings.api.task_timeout_seconds,
        renew=lease_keeper(lease), progress=ctx.display.also(ctx.progress), stop=ctx.stop,
        extra_columns=extra_columns, on_task=on_task,
        on_offer=ctx.results.offer if ctx.results is not None else None)


def publish_store(ctx: JobContext, store_plan: StorePlan, *, kind: str = "offers"
                  ) -> PublishResult:
    """Publish one store's plan as one recorded run of ``kind`` ("offers", "stock",
    "queue": what earlier runs queued, sent as the hourly budget frees, or "watch": the
    daemon's stock watch, its plan already cut to the lowered quantities)."""
    settings, state = ctx.settings, ctx.state
    store = settings.store(store_plan.store)
    if kind == "stock":
        store_plan = stock_only(store_plan, StoreSnapshot(state.offers, store.name))
    started = ctx.now()
    record = state.runs.start(ctx.run_id, store.name, kind, at=started)
    try:
        with build_client(settings, store, ctx.limiter_for(store),
                          ctx.leases.get(store.name)) as client, \
                ctx.display.step(f"publishing {store.name}", total=len(store_plan.changes)):
            # The daemon's stock watch (syncer/pipeline/watch.py) spends the lane's share too.
            publisher = publisher_for(ctx, store, client, lane=kind in ("stock", "watch"))
            result = publisher.apply(store_plan)
            result.counts.update(requests=client.stats.requests, retries=client.stats.retries,
                                 rate_limited=client.stats.rate_limited)
            counts = {**result.counts, "planned": len(store_plan.changes),
                      "rejected_rows": store_plan.rejected}
    except BaseException as exc:
        state.runs.finish(record, "failed", {}, str(exc) or type(exc).__name__, at=ctx.now())
        if ctx.results is not None:
            ctx.results.store_finished(store.name, kind, "failed", {},
                                       str(exc) or type(exc).__name__, started, ctx.now())
        raise
    state.runs.finish(record, result.outcome, counts, result.stopped, at=ctx.now())
    if ctx.results is not None:
        ctx.results.store_finished(store.name, kind, result.outcome, counts, result.stopped,
                                   started, ctx.now())
    log.info("run summary", store=store.name, kind=kind, outcome=result.outcome, **counts)
    return result


def reconcile_store(ctx: JobContext, store: StoreSettings, catalog: CatalogSource
                    ) -> Reconciliation:
    """Read every live listing of the store's country and bring the snapshot in line with
    what Back Market shows (see ``syncer.publish.reconcile``), as one recorded run."""
    state = ctx.state
    record = state.runs.start(ctx.run_id, store.name, "reconcile", at=ctx.now())
    try:
        not_offered: dict[str, str] = {}
        offers = catalog_offers(ctx.settings, store, catalog, not_offered)
        snapshot = state.offers.snapshot(store.name)
        with build_client(ctx.settings, store, ctx.limiter_for(store),
                          ctx.leases.get(store.name)) as client:
            listings = ctx.display.track(client.iter_listings(),
                                         f"reading listings of {store.name}")
            result = reconcile(store.name, store.locale, listings, snapshot, offers,
                               not_offered)
            requests = client.stats.requests
        state.offers.record_observed(store.name, [Ack(sku, live, listing_id)
                                                  for sku, live, listing_id in result.observed])
        state.offers.forget(store.name, result.missing)
    except BaseException as exc:
        state.runs.finish(record, "failed", {}, str(exc) or type(exc).__name__, at=ctx.now())
        raise
    counts = {**result.summary(), "requests": requests}
    state.runs.finish(record, "ok", counts, at=ctx.now())
    log.info("run summary", store=store.name, kind="reconcile", outcome="ok", **counts)
    return result


def products_store(ctx: JobContext, store: StoreSettings, catalog: CatalogSource
                   ) -> dict[str, int]:
    """The products job of one store (see ``syncer.publish.products``), as one recorded run,
    its offers published with the store's budget, lease and progress."""
    state = ctx.state
    record = state.runs.start(ctx.run_id, store.name, "products", at=ctx.now())
    try:
        with build_client(ctx.settings, store, ctx.limiter_for(store),
                          ctx.leases.get(store.name)) as client:
            counts = publish_products(
                ctx.settings, state, store, catalog, client,
                lambda extra, on_task: publisher_for(ctx, store, client, extra_columns=extra,
                                                     on_task=on_task))
    except BaseException as exc:
        state.runs.finish(record, "failed", {}, str(exc) or type(exc).__name__, at=ctx.now())
        raise
    state.runs.finish(record, "ok", counts, at=ctx.now())
    log.info("run summary", store=store.name, kind="products", outcome="ok", **counts)
    return counts
