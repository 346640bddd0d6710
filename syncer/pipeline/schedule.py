"""What is due for a store, and running it: the heart of `syncer run` and `syncer daemon`.

Each store has four jobs, each enabled and timed on its own: reconciliation, products,
offers and the stock lane. A job is due when its last successful run is older than its
interval (a full offer run counts for the stock lane too). Due jobs run in that order, under
the store's lock, so that drift found by reconciliation is restored by the offer run that
follows. The clock is injected: tests drive it, nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import structlog

from syncer.alerts.events import StoreTurn
from syncer.config.stores import StoreSettings
from syncer.errors import LockHeld, SyncerError
from syncer.pipeline.jobs import (
    JobContext,
    check_zero_share,
    products_store,
    publish_store,
    reconcile_store,
)
from syncer.pipeline.planner import catalog_source, make_plan
from syncer.publish.outcomes import PublishResult
from syncer.publish.reconcile import Reconciliation

log = structlog.get_logger("syncer.pipeline.schedule")

# The market pass comes last: it reads the BackBox of the prices the offer run just sent.
# "queue" sends what earlier runs queued as soon as the hourly budget frees (issue 16), not
# on the offers' cadence; it is due only when something is queued and a line is free.
KINDS: Final = ("reconcile", "products", "offers", "stock", "queue", "market")
# A full offer run also sends what the stock lane would.
COUNTS_FOR: Final = {"stock": ("stock", "offers")}


@dataclass(frozen=True)
class JobState:
    store: str
    kind: str
    enabled: bool
    last: datetime | None
    next_at: datetime | None  # None: disabled

    def due(self, now: datetime) -> bool:
        return self.enabled and self.next_at is not None and self.next_at <= now


def settings_of(store: StoreSettings, kind: str) -> tuple[bool, timedelta]:
    enabled, minutes = {
        "offers": (store.publish_offers, store.offers_every_minutes),
        "products": (store.publish_products, store.products_every_minutes),
        "reconcile": (store.reconcile, store.reconcile_every_minutes),
        "stock": (store.stock_lane and store.publish_offers, store.stock_every_minutes),
        "market": (store.watch_market, store.market_every_minutes),
    }[kind]
    return enabled, timedelta(minutes=minutes)


def job_states(ctx: JobContext, store: StoreSettings, now: datetime) -> list[JobState]:
    states = []
    for kind in KINDS:
        if kind == "queue":
            from syncer.planning.queue import queue_due_at

            last = ctx.state.runs.last_success(store.name, ("queue",))
            states.append(JobState(store.name, kind, store.publish_offers, last, None if not
                                   store.publish_offers else queue_due_at(
                                       ctx.state, store, ctx.settings.limits.sku_lines_per_hour,
                                       now)))
            continue
        enabled, every = settings_of(store, kind)
        last = ctx.state.runs.last_success(store.name, COUNTS_FOR.get(kind, (kind,)))
        next_at = None if not enabled else (now if last is None else last + every)
        states.append(JobState(store.name, kind, enabled, last, next_at))
    return states


@dataclass
class StoreRun:
    """What one store's turn did."""

    store: str
    ran: list[str] = field(default_factory=list)
    publications: list[tuple[str, PublishResult]] = field(default_factory=list)
    reconciliation: Reconciliation | None = None
    skipped: str | None = None  # e.g. locked by another run
    error: str | None = None  # what stopped this store's turn (the other stores go on)
    products: dict[str, int] | None = None
    market: dict[str, int] | None = None  # the market pass's counts


def run_due(ctx: JobContext, stores: Sequence[StoreSettings], catalog: Path | None = None,
            force: bool = False) -> list[StoreRun]:
    """Run whatever is due for each store, and nothing else."""
    runs = []
    for store in stores:
        now = ctx.now()
        due = [j.kind for j in job_states(ctx, store, now) if j.due(now)]
        if not due:
            continue
        outcome = StoreRun(store.name)
        try:
            with ctx.state.locks.lock(store.name, ctx.settings.limits.lock_lease_seconds,
                                      ctx.run_id) as lease:
                ctx.leases[store.name] = lease
                # Another run may have done it while we waited: look again under the lock.
                now = ctx.now()
                due = [j.kind for j in job_states(ctx, store, now) if j.due(now)]
                try:
                    _run_store(ctx, store, due, catalog, force, outcome)
                except SyncerError as exc:
                    _finished(ctx, store, outcome, exc)
                    raise
                _finished(ctx, store, outcome)
        except LockHeld as exc:
            outcome.skipped = str(exc)
            log.warning("store skipped", store=store.name, reason=str(exc))
        except SyncerError as exc:  # one store's trouble must not stop the others, nor a daemon
            outcome.error = str(exc)
            log.error("store stopped", store=store.name, reason=str(exc))
        finally:
            ctx.leases.pop(store.name, None)
        runs.append(outcome)
        if ctx.stop():
            break
    return runs


def _finished(ctx: JobContext, store: StoreSettings, outcome: StoreRun,
              error: SyncerError | None = None) -> None:
    """Tell what the store's turn came to (the alerts), still under its lock: two runs of a
    store never tell one problem twice."""
    ctx.finished(StoreTurn(store, error, tuple(r for _, r in outcome.publications),
                           tuple(outcome.ran)))


def _run_store(ctx: JobContext, store: StoreSettings, due: list[str], catalog: Path | None,
               force: bool, outcome: StoreRun) -> None:
    source = ctx.display.rows(catalog_source(ctx.settings, catalog))
    for kind in due:
        if ctx.stop():
            return
        if kind == "reconcile":
            outcome.reconciliation = reconcile_store(ctx, store, source)
        elif kind == "products":
            outcome.products = products_store(ctx, store, source)
        elif kind in ("offers", "stock", "queue"):
            if kind != "offers" and "offers" in due:
                continue  # the full offer run sends the stock and the queue too
            if kind == "queue" and not _queue_still_due(ctx, store):
                continue  # the stock lane sent it, or took the budget's last lines
            plan = make_plan(ctx.settings, [store], source, ctx.state)
            check_zero_share(ctx.settings, plan, force)
            store_plan = plan.stores[0]
            if kind == "queue":
                from syncer.planning.queue import queued_only

                store_plan = queued_only(store_plan, ctx.state)
            outcome.publications.append((kind, publish_store(ctx, store_plan, kind=kind)))
        elif kind == "market":
            from syncer.pipeline.market import market_store

            outcome.market = market_store(ctx, store).counts()
        outcome.ran.append(kind)


def _queue_still_due(ctx: JobContext, store: StoreSettings) -> bool:
    from syncer.planning.queue import queue_due_at

    now = ctx.now()
    due_at = queue_due_at(ctx.state, store, ctx.settings.limits.sku_lines_per_hour, now)
    return due_at is not None and due_at <= now


def next_due_lines(ctx: JobContext, stores: Sequence[StoreSettings], now: datetime
                   ) -> list[str]:
    lines = []
    for store in stores:
        parts = []
        for job in job_states(ctx, store, now):
            if job.kind == "queue" and job.enabled and job.next_at is None:
                parts.append("queue empty")
                continue
            if not job.enabled or job.next_at is None:
                parts.append(f"{job.kind} disabled")
                continue
            wait = job.next_at - now
            parts.append(f"{job.kind} {job.next_at.isoformat(timespec='minutes')} "
                         f"(in {_duration(wait)})")
        lines.append(f"{store.name}: " + "; ".join(parts))
    return lines


def _duration(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}" if hours else f"{minutes} min"
