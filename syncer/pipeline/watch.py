"""The stock watch of `syncer daemon`: a stock-out reaches Back Market within seconds, not at
the stock lane's next turn (issue 17).

Every ``stock_watch_seconds`` (20 by default, per store; 0 turns it off) the daemon looks at
the catalog, cheaply (``syncer.catalog.watch``): a CSV file's ``stat``, then, when it changed,
a stock-only read telling whether any SKU's stock cells went down; a database catalog's one
small query. When some stock may have gone down, the watched stores are planned as a run
would plan them, under their locks, in one read of the catalog, and only the quantities that
go *down* are sent (a stock-out
is a lower quantity: 0), spending the stock lane's share of the hourly budget
(``stock_budget_share``), zeros first, the rest queued (invariant 8). It is recorded in the
run log as a run of kind ``watch``, and told to the alerts like any store's turn.

What it never does, and why:

- It never zeroes an offer as *gone* from the catalog. It reads the file the moment it
  changes, which is when a half-written export is most likely: a file cut on a line break
  lists fewer SKUs and looks whole. Offers gone from the catalog wait for the stock lane and
  the offer runs, with their mass-zero guard.
- It never rushes a higher quantity, a new offer, a price or any content: selling what is
  not in stock costs a seller a cancelled order and a defect on the account, while a restock
  sent at the next stock lane turn (15 min) costs at most a few sales. The budget share goes
  where the harm is.
- A file cut mid-row is refused whole (``CsvCatalog``), a row that cannot be tied to a SKU or
  that fails validation changes nothing (the planner's guards), and a plan the mass-zero
  guard stops sends nothing (``check_zero_share``). A file that changed while it was read is
  read again at the next look.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from syncer.alerts.events import StoreTurn
from syncer.catalog.files import CsvCatalog
from syncer.catalog.sql import SqlCatalog
from syncer.catalog.watch import Signature, StockCells, file_signature, sql_signature
from syncer.config.settings import Settings
from syncer.config.stores import StoreSettings
from syncer.core.offers import QUANTITY
from syncer.errors import ConfigError, LockHeld, SyncerError
from syncer.pipeline.jobs import JobContext, check_zero_share, publish_store
from syncer.pipeline.planner import catalog_source, make_plan
from syncer.pipeline.schedule import StoreRun, job_states, run_due
from syncer.planning.changes import Change, StorePlan
from syncer.planning.diff import stock_only
from syncer.planning.mapping import load_profile
from syncer.state.offers import StoreSnapshot

log = structlog.get_logger("syncer.pipeline.watch")

# A file modified this recently may be modified again within the file system's timestamp
# granularity, keeping its size: its signature is not trusted, it is read again next look.
FRESH_NS = 2_000_000_000


def watched(stores: Sequence[StoreSettings]) -> list[StoreSettings]:
    return [s for s in stores if s.publish_offers and s.stock_lane and s.stock_watch_seconds > 0]


def decreases_only(lane: StorePlan) -> StorePlan:
    """Of the stock lane's share of a plan (``stock_only``), the quantities that go down on
    offers still in the catalog: never a zero as gone, never a higher quantity."""
    out = StorePlan(lane.store, lane.locale, lane.revision, unchanged=lane.unchanged,
                    rejected=lane.rejected, quarantined=lane.quarantined, live=lane.live,
                    notices=list(lane.notices))
    outs: list[Change] = []
    lower: list[Change] = []
    for change in lane.changes:
        if change.action == "zero":
            continue  # gone from the catalog: never rushed (a half-written file looks so)
        before, after = change.changes[0][1:] if change.changes else (None, None)
        if isinstance(before, int) and after == change.target[QUANTITY] \
                and isinstance(after, int) and after < before:
            (outs if after == 0 else lower).append(change)
    # Stock-outs first when the lane's share runs short: they are what sells what is not
    # there (the sending order is stable within a priority).
    for change in outs + lower:
        out.changes.append(change)
    return out


class StockWatch:
    """What the watch remembers between two looks: the catalog version last seen, and (for
    a file) the stock cells it held."""

    def __init__(self, settings: Settings, catalog: Path | None = None) -> None:
        self.settings = settings
        self.source = catalog_source(settings, catalog)
        self.signature: Signature | None = None
        self.cells: StockCells | None = None
        self.refused: Signature | None = None  # a version that could not be read
        self.pending = False  # a store was busy at the last look: plan it again
        self.last_look: datetime | None = None
        self.columns: tuple[str, str] | None = None
        # What the watch cost so far: looks (a stat or one small query), stock-only reads of
        # a file, and plans of a store.
        self.costs = {"looks": 0, "reads": 0, "plans": 0}
        if isinstance(self.source, SqlCatalog):
            offer = load_profile(settings.mapping_path()).offer
            sku, stock = offer.get("sku"), offer.get("stock")
            if sku is None or stock is None or sku.column is None or stock.column is None:
                raise ConfigError("the stock watch needs the SKU and the stock from columns "
                                  "of the database catalog; set stock_watch_seconds = 0")
            self.columns = (sku.column, stock.column)

    def interval(self, stores: Sequence[StoreSettings]) -> float | None:
        seconds = [s.stock_watch_seconds for s in watched(stores)]
        return min(seconds) if seconds else None

    def next_look(self, stores: Sequence[StoreSettings]) -> datetime | None:
        every = self.interval(stores)
        if every is None:
            return None
        return None if self.last_look is None else self.last_look + timedelta(seconds=every)

    def look(self, ctx: JobContext, stores: Sequence[StoreSettings]) -> list[StoreRun]:
        """Look at the catalog if a look is due; on a possible stock decrease, send the
        decreases of every watched store."""
        stores = watched(stores)
        if not stores:
            return []
        now = ctx.now()
        due = self.next_look(stores)
        if due is not None and now < due:
            return []
        self.last_look = now
        self.costs["looks"] += 1
        if not self.changed() and not self.pending:
            return []
        runs = self._stores(ctx, stores)
        # Another run holds a store: plan again at the next look, changed or not.
        self.pending = any(r.skipped for r in runs)
        return runs

    def changed(self) -> bool:
        """Whether some stock may have gone down since the last look; remembers what this
        look saw (a file's stock cells are kept once, not twice, during the plan)."""
        if isinstance(self.source, SqlCatalog):
            assert self.columns is not None
            try:
                answer = sql_signature(self.source, *self.columns,
                                       self.settings.catalog.changed_column)
            except SyncerError as exc:
                log.warning("stock watch: cannot look at the catalog", reason=str(exc))
                return False
            changed, self.signature = answer != self.signature, answer
            return changed
        assert isinstance(self.source, CsvCatalog)
        path = self.source.path
        signature = file_signature(path)
        if signature is None or signature == self.signature or signature == self.refused:
            return False
        self.costs["reads"] += 1
        try:
            cells = StockCells.read(self.source, load_profile(self.settings.mapping_path()),
                                    self.settings.stores)
        except SyncerError as exc:  # a cut file, a bad header: the runs report it
            log.warning("stock watch: catalog not read, nothing sent", reason=str(exc))
            self.refused = signature
            return False
        if file_signature(path) != signature:
            return False  # written while read: read it again at the next look
        lowered = cells.lowered(self.cells)
        self.cells = cells
        fresh = time.time_ns() - int(signature[2]) < FRESH_NS  # type: ignore[call-overload]
        self.signature = None if fresh else signature
        if lowered:
            log.info("stock watch: stock may have gone down", skus=len(lowered))
        return bool(lowered)

    def _stores(self, ctx: JobContext, stores: Sequence[StoreSettings]) -> list[StoreRun]:
        """Plan the watched stores whose lock is free, in one read of the catalog (quantity
        is global: a plan reads every store's rows anyway), and send each one's decreases."""
        runs = {store.name: StoreRun(store.name) for store in stores}
        with ExitStack() as locks:
            held = []
            for store in stores:
                try:
                    ctx.leases[store.name] = locks.enter_context(ctx.state.locks.lock(
                        store.name, ctx.settings.limits.lock_lease_seconds, ctx.run_id))
                    held.append(store)
                except LockHeld as exc:
                    runs[store.name].skipped = str(exc)
                    log.info("stock watch: store busy, looking again next time",
                             store=store.name)
            try:
                if held:
                    self._send(ctx, held, runs)
            finally:
                for store in held:
                    ctx.leases.pop(store.name, None)
        return list(runs.values())

    def _send(self, ctx: JobContext, stores: list[StoreSettings],
              runs: dict[str, StoreRun]) -> None:
        self.costs["plans"] += 1
        try:
            plan = make_plan(ctx.settings, stores, self.source, ctx.state)
        except SyncerError as exc:  # the catalog or the state could not be read
            for store in stores:
                _told(ctx, store, runs[store.name], exc)
            return
        for store, store_plan in zip(stores, plan.stores, strict=True):
            outcome, error = runs[store.name], None
            try:
                check_zero_share(ctx.settings, replace(plan, stores=[store_plan]), force=False)
                lane = decreases_only(stock_only(store_plan,
                                                 StoreSnapshot(ctx.state.offers, store.name)))
                if lane.changes:
                    outcome.publications.append(("watch",
                                                 publish_store(ctx, lane, kind="watch")))
                    outcome.ran.append("watch")
            except SyncerError as exc:  # one store's trouble does not stop the others
                error = exc
            _told(ctx, store, outcome, error)


def _told(ctx: JobContext, store: StoreSettings, outcome: StoreRun,
          error: SyncerError | None) -> None:
    """The store's turn, told to the alerts under its lock (as ``run_due`` tells it)."""
    if error is not None:
        outcome.error = str(error)
        log.error("stock watch stopped", store=store.name, reason=str(error))
    ctx.finished(StoreTurn(store, error, tuple(r for _, r in outcome.publications),
                           tuple(outcome.ran)))


def daemon_turn(ctx: JobContext, stores: Sequence[StoreSettings], catalog: Path | None,
                watch: StockWatch | None) -> list[StoreRun]:
    """One turn of `syncer daemon`: whatever is due, then the stock watch's look."""
    runs = run_due(ctx, stores, catalog)
    if watch is not None and not ctx.stop():
        runs += [r for r in watch.look(ctx, stores) if r.ran or r.error]
    return runs


def daemon_wait(ctx: JobContext, stores: Sequence[StoreSettings], watch: StockWatch | None,
                max_sleep: float) -> float:
    """Seconds until the daemon's next turn: the soonest due job or look, within
    ``max_sleep``."""
    now = ctx.now()
    soonest = min((j.next_at for s in stores for j in job_states(ctx, s, now)
                   if j.next_at is not None), default=None)
    wait = max_sleep if soonest is None else \
        min(max_sleep, max(1.0, (soonest - now).total_seconds()))
    if watch is not None and (every := watch.interval(stores)) is not None:
        look = watch.next_look(stores)
        wait = min(wait, every if look is None else max(0.0, (look - now).total_seconds()))
    return wait
