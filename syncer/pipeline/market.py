"""The market view as jobs: a store's pass of BackBox reads as a recorded run (``market_store``:
`syncer run`'s market job, `syncer market --refresh`) and the market report of the stores from
what the state holds and the catalog says (``report_for``: `syncer market`). The reading and
the report themselves are ``syncer.market.view``'s; this module gives them a client, the
catalog's offers and the state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from syncer.config.settings import Settings
from syncer.config.stores import StoreSettings
from syncer.core.offers import Offer
from syncer.market.view import MarketReport, PassResult, advisor_for, market_pass, market_report
from syncer.pipeline.jobs import JobContext, build_client
from syncer.pipeline.planner import catalog_offers, catalog_source
from syncer.state.store import StateStore

log = structlog.get_logger("syncer.pipeline.market")


def market_store(ctx: JobContext, store: StoreSettings, *, every: timedelta | None = None
                 ) -> PassResult:
    """One market pass for a store (``syncer.market.view.market_pass``), recorded in the run
    log as a "market" run. ``every``: re-read listings read longer ago than this (default: the
    store's ``market_every_minutes``; zero reads every listing)."""
    settings, state = ctx.settings, ctx.state
    every = timedelta(minutes=store.market_every_minutes) if every is None else every
    record = state.runs.start(ctx.run_id, store.name, "market", at=ctx.now())
    try:
        with build_client(settings, store, ctx.limiter_for(store),
                          ctx.leases.get(store.name)) as client:
            result = market_pass(client, state.market, account=store.account, store=store.name,
                                 locale=store.locale, every=every,
                                 seconds=settings.market.pass_seconds,
                                 max_reads=settings.market.max_reads, now=ctx.now,
                                 stop=ctx.stop)
            requests = client.stats.requests
    except BaseException as exc:
        state.runs.finish(record, "failed", {}, str(exc) or type(exc).__name__, at=ctx.now())
        raise
    counts = {**result.counts(), "requests": requests}
    outcome = "partial" if result.failed else "ok"
    state.runs.finish(record, outcome, counts, result.errors[0] if result.errors else None,
                      at=ctx.now())
    log.info("run summary", store=store.name, kind="market", outcome=outcome, **counts)
    return result


def report_for(settings: Settings, stores: Sequence[StoreSettings], state: StateStore, *,
               catalog: Path | None = None, now: datetime | None = None) -> MarketReport:
    """The market report of these stores from what the state holds (``catalog``: a
    ``--catalog`` path; the configured catalog otherwise, if any)."""
    now = now or datetime.now(UTC)
    offers: dict[str, Mapping[str, Offer]] | None = None
    inputs: dict[str, dict[str, Any]] = {}  # store -> SKU key -> the row's pricing cells
    if catalog is not None or settings.catalog.path is not None \
            or settings.catalog.url is not None:
        source = catalog_source(settings, catalog)
        offers = {s.name: catalog_offers(settings, s, source, pricing=inputs.setdefault(
            s.name, {})) for s in stores}
    competition = {s.account: state.market.competition(s.account) for s in stores}
    report = market_report(
        [(s.name, s.locale, s.account) for s in stores],
        {s.name: state.market.market_listings(s.name) for s in stores}, competition, offers,
        {s.name: advisor_for(settings, s, inputs=inputs.get(s.name), state=state, now=now)
         for s in stores}, now)
    if offers is None:
        report.notes.append("no catalog configured: no floor, ceiling or suggested price")
    return report
