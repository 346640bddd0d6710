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
from syncer.plan import Plan
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
                if differ is not None:
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
