"""orders pull: GET /ws/orders modified since the store's last pull minus an overlap, page
by page, sorted into new, changed and unchanged; ``save_pull`` stores them (after the
export) and moves the store's watermark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from syncer.backmarket.client import BackMarketClient
from syncer.config.settings import Settings
from syncer.config.stores import StoreSettings
from syncer.orders.records import order_hash, order_rows, parse_date, rfc3339
from syncer.state.store import StateStore

log = structlog.get_logger("syncer.orders.pull")


@dataclass
class PullResult:
    store: str
    scope: str
    since: datetime
    fetched: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    lines: int = 0
    other_countries: int = 0  # answered despite the country_code filter: left out
    previous: datetime | None = None  # the watermark before this pull
    watermark: datetime | None = None
    exported: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (change, order)
    rows: list[dict[str, Any]] = field(default_factory=list)  # state rows of new and changed
    line_rows: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = {"fetched": self.fetched, "new": self.new, "changed": self.changed,
                  "unchanged": self.unchanged, "lines": self.lines}
        if self.other_countries:
            counts["other_countries"] = self.other_countries
        return counts


def pull_scope(settings: Settings, store: StoreSettings, all_countries: bool) -> str:
    if all_countries:
        return "all"
    return store.order_pull_scope or settings.orders.pull_scope


def pull(settings: Settings, store: StoreSettings, client: BackMarketClient,
         state: StateStore, *, scope: str, now: datetime | None = None) -> PullResult:
    """Fetch the orders modified since the last pull minus the overlap (the first pull goes
    back ``first_pull_days``) and sort them into new, changed and unchanged. Writes nothing:
    ``save_pull`` stores them once they are exported."""
    now = now or datetime.now(UTC)
    config = settings.orders
    watermark = state.orders.order_watermark(store.name, scope)
    since = (watermark - timedelta(minutes=config.overlap_minutes) if watermark is not None
             else now - timedelta(days=config.first_pull_days))
    filters: dict[str, str | int] = {"date_modification": rfc3339(since)}
    if scope == "store":
        filters["country_code"] = store.locale
    fetched: dict[int, dict[str, Any]] = {}
    foreign = 0
    for order in client.iter_orders(**filters):
        if not isinstance(order, dict) or not isinstance(order.get("order_id"), int):
            continue
        # Back Market does not filter orders by Accept-Language (one real call returned
        # several countries): a store pulling its own country keeps only that country's,
        # even if the country_code filter were ignored, so no store takes another's order.
        if scope == "store" and order.get("country_code") != store.locale:
            foreign += 1
            continue
        fetched[order["order_id"]] = order  # a page shift may show an order twice
    result = PullResult(store.name, scope, since, fetched=len(fetched), previous=watermark,
                        watermark=watermark, other_countries=foreign)
    if foreign:
        log.warning("orders of other countries left out", store=store.name, count=foreign,
                    country_code=store.locale)
    known = state.orders.order_hashes(store.account, sorted(fetched))
    for order_id, order in sorted(fetched.items()):
        previous = known.get(order_id)
        modified = parse_date(order.get("date_modification"))
        if modified is not None and (result.watermark is None or modified > result.watermark):
            result.watermark = modified
        if previous == order_hash(order):
            result.unchanged += 1
            continue
        change = "new" if previous is None else "changed"
        setattr(result, change, getattr(result, change) + 1)
        row, order_lines = order_rows(store.account, store.name, order)
        result.rows.append(row)
        result.line_rows.extend(order_lines)
        result.exported.append((change, order))
    result.lines = len(result.line_rows)
    return result


def save_pull(state: StateStore, result: PullResult) -> None:
    """Store a pull's new and changed orders, then move the store's watermark to the latest
    modification seen (never back): the next pull starts there, minus the overlap."""
    state.orders.save_orders(result.rows, result.line_rows)
    if result.watermark != result.previous:
        state.orders.set_order_watermark(result.store, result.scope, result.watermark)
