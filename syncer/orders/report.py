"""What an orders step did: one outcome per order, line or input row, logged as it comes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from syncer.backmarket.client import BackMarketClient
from syncer.config.stores import StoreSettings

log = structlog.get_logger("syncer.orders.report")


ClientFor = Callable[[StoreSettings], BackMarketClient]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one order, line or input row. ``status`` is one of "accepted",
    "cancelled", "held" (left for the seller), "shipped", "skipped" (already done),
    "failed", or "would-..." in a dry run."""

    status: str
    store: str | None = None
    order_id: int | None = None
    sku: str | None = None
    row: int | None = None
    field: str | None = None
    message: str = ""
    request_id: str | None = None

    def describe(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.order_id is not None:
            where.append(f"order {self.order_id}")
        if self.sku:
            where.append(f"SKU {self.sku}")
        text = ", ".join(where) or "-"
        detail = f"{self.field}: {self.message}" if self.field else self.message
        rid = f" [request {self.request_id}]" if self.request_id else ""
        return f"{self.status.upper():<9} {text}" + (f": {detail}" if detail else "") + rid

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "store": self.store, "order_id": self.order_id,
                "sku": self.sku, "row": self.row, "field": self.field,
                "message": self.message, "request_id": self.request_id}


@dataclass
class StepReport:
    """The outcomes of one ``accept`` or ``ship`` run, over every selected store."""

    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        level = "warning" if outcome.status == "failed" else "info"
        getattr(log, level)("order step", **{k: v for k, v in outcome.to_dict().items()
                                             if v is not None})

    def counts(self, store: str | None = None) -> dict[str, int]:
        found: dict[str, int] = {}
        for outcome in self.outcomes:
            if store is None or outcome.store == store:
                found[outcome.status] = found.get(outcome.status, 0) + 1
        return found

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "failed")


def not_pulled(order_id: int) -> str:
    return (f"order {order_id} is not in the state of these stores; run `syncer orders pull` "
            "first (or check the order id)")
