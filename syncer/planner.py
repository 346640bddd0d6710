"""One planning pass: catalog -> mapping -> validation -> diff against the snapshot.

The catalog is read once for every configured store: a SKU's presence in the other stores of
the same account decides whether it may be zeroed (quantity is global). Only the selected
stores are diffed. Reads the catalog and the state; writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import structlog

from syncer.catalog import CatalogSource, CsvCatalog
from syncer.config import Settings, StoreSettings
from syncer.diff import StoreDiff
from syncer.mapping import compile_mapping, load_profile
from syncer.offers import Offer
from syncer.plan import Plan
from syncer.products import held_eans
from syncer.state import StateStore
from syncer.validation import Validator

log = structlog.get_logger("syncer.planner")


def catalog_source(settings: Settings, override: Path | None = None) -> CsvCatalog:
    path = override if override is not None else settings.catalog_path()
    return CsvCatalog(path=path, encoding=settings.catalog.encoding,
                      legacy_encoding=settings.catalog.legacy_encoding,
                      delimiter=settings.catalog.delimiter)


def siblings(settings: Settings, store: StoreSettings) -> tuple[str, ...]:
    """Other stores publishing to the same listings (same platform and host)."""
    return tuple(s.name for s in settings.stores
                 if s.name != store.name and s.account == store.account)


def make_plan(settings: Settings, stores: Sequence[StoreSettings], catalog: CatalogSource,
              state: StateStore) -> Plan:
    profile = load_profile(settings.mapping_path())
    # Every configured store, enabled or not, counts for "still listed elsewhere".
    all_stores = list(settings.stores)
    differs = {
        s.name: StoreDiff(s.name, s.locale, state.revision(s.name), state.snapshot(s.name),
                          {key: at.isoformat(timespec="seconds")
                           for key, (_, _, at) in state.queued(s.name).items()})
        for s in stores
    }
    # Offers whose product proposal Back Market rejected wait for new product content.
    held = {s.name: held_eans(state, s.name) for s in stores}
    listed: dict[str, set[str]] = {s.name: set() for s in all_stores}
    rejections = []
    rows = 0
    with catalog.open() as stream:
        mapping = compile_mapping(profile, stream.header, all_stores)
        validator = Validator(mapping)
        for row, values in stream.rows:
            rows += 1
            result = validator.validate(row, values)
            key = result.key
            if result.rejections:
                rejections.extend(result.rejections)
            if key is not None:
                for name in result.listed_stores:
                    listed[name].add(key)
            for offer in result.offers:
                differ = differs.get(offer.store)
                if differ is None:
                    continue
                reason = held[offer.store].get(offer.ean or "") \
                    if offer.product_id is None else None
                entry = differ.snapshot.get(offer.sku_key)
                if reason and (entry is None or entry.published is None):
                    differ.held(offer, reason)
                else:
                    differ.offer(offer)
            for name in result.rejected_stores:
                differ = differs.get(name)
                if differ is not None:
                    differ.rejected(key)
        description = stream.description
    plans = []
    for store in stores:
        others = siblings(settings, store)

        def elsewhere(key: str, others: tuple[str, ...] = others) -> bool:
            return any(key in listed[name] for name in others)

        plans.append(differs[store.name].finish(elsewhere))
    log.info("planned", rows=rows, stores=[s.name for s in stores],
             rejections=len(rejections))
    return Plan(stores=plans, rejections=rejections, notes=list(mapping.notes),
                catalog=description, mapping=str(profile.name))


def catalog_offers(settings: Settings, store: StoreSettings, catalog: CatalogSource
                   ) -> dict[str, Offer]:
    """The store's valid offers by SKU key (validated against every store, as planning does,
    so that duplicates and row numbers agree with the plan)."""
    profile = load_profile(settings.mapping_path())
    offers: dict[str, Offer] = {}
    with catalog.open() as stream:
        validator = Validator(compile_mapping(profile, stream.header, list(settings.stores)))
        for row, values in stream.rows:
            for offer in validator.validate(row, values).offers:
                if offer.store == store.name:
                    offers[offer.sku_key] = offer
    return offers
