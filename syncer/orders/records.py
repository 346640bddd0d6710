"""Orders as Back Market sends them and as the state keeps them: the order and line
states of the spec, the state rows of an order, and finding a pulled order again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from syncer.config.stores import StoreSettings
from syncer.core.offers import sku_key
from syncer.state.store import StateStore

# Order states (OrderState) and orderline states (OrderLineState) of the spec.
ORDER_NEW: Final = 0


ORDER_PENDING_PAYMENT: Final = 10


ORDER_PAID: Final = 1


ORDER_TO_SHIP: Final = 3


ORDER_NOT_PAID: Final = 8


ORDER_DONE: Final = 9


LINE_PAID: Final = 1


LINE_ACCEPTED: Final = 2


LINE_SHIPPED: Final = 3


LINE_CANCELLED: Final = 4


# A line that reached one of these was accepted at some point.
ACCEPTED_OR_LATER: Final = frozenset({2, 3, 5, 6})


ORDER_STATE_NAMES: Final = {
    0: "new (payment check)", 10: "pending payment", 1: "paid", 3: "to ship",
    8: "not paid", 9: "processed",
}


LINE_STATE_NAMES: Final = {
    0: "new", 9: "on hold", 8: "pending payment", 1: "paid", 2: "accepted", 3: "shipped",
    4: "cancelled", 5: "refunded before shipping", 6: "refunded after shipping", 7: "not paid",
}


UNPAID_ORDER_STATES: Final = frozenset({ORDER_NEW, ORDER_PENDING_PAYMENT, ORDER_NOT_PAID})


# A line gets its identifiers once accepted (at the latest, after it shipped).
IDENTIFIABLE_LINE_STATES: Final = frozenset({LINE_ACCEPTED, LINE_SHIPPED})


def order_hash(order: Mapping[str, Any]) -> str:
    """Change detection: a hash of the order's canonical JSON."""
    canonical = json.dumps(order, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=8).hexdigest()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_date(value: object) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def line_state(order: Mapping[str, Any], sku: str) -> int | None:
    """The state of the order's line with this SKU (matched ignoring case), or None."""
    for line in order.get("orderlines") or []:
        if sku_key(str(line.get("listing", ""))) == sku_key(sku):
            state = line.get("state")
            return state if isinstance(state, int) else None
    return None


def order_rows(account: str, store: str, order: Mapping[str, Any]
               ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The state rows of an order as Back Market sent it: the order and its lines."""
    order_id = int(order["order_id"])
    row = {
        "account": account, "order_id": order_id, "store": store,
        "country_code": str(order.get("country_code") or ""),
        "state": _state(order.get("state")),
        "currency": _text(order.get("currency"), 3),
        "price": _text(order.get("price"), 24),
        "shipping_price": _text(order.get("shipping_price"), 24),
        "date_creation": parse_date(order.get("date_creation")),
        "date_modification": parse_date(order.get("date_modification")),
        "date_payment": parse_date(order.get("date_payment")),
        "date_shipping": parse_date(order.get("date_shipping")),
        # Back Market writes "" until the order ships: kept as "not set".
        "tracking_number": _text(order.get("tracking_number"), 200) or None,
        "tracking_url": _text(order.get("tracking_url"), 2000) or None,
        "shipper": _text(order.get("shipper_display") or order.get("shipper"), 200) or None,
        "content_hash": order_hash(order),
        "data": json.dumps(order, sort_keys=True, default=str),
        "pulled_at": datetime.now(UTC),
    }
    lines = [
        {
            "account": account, "orderline_id": int(line["id"]), "order_id": order_id,
            "sku": str(line.get("listing") or "")[:128],
            "quantity": int(line.get("quantity") or 0),
            "price": _text(line.get("price"), 24),
            "shipping_price": _text(line.get("shipping_price"), 24),
            "currency": _text(line.get("currency"), 3),
            "state": _state(line.get("state")),
            "product": _text(line.get("product"), 10_000),
            "imei": _text(line.get("imei"), 15) or None,
            "serial_number": _text(line.get("serial_number"), 50) or None,
        }
        for line in order.get("orderlines") or []
        if isinstance(line, Mapping) and line.get("id") is not None
    ]
    return row, lines


def _text(value: object, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


def _state(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def find_order(stores: Sequence[StoreSettings], state: StateStore, order_id: int
                ) -> tuple[StoreSettings, dict[str, Any]] | None:
    """The order in the state, with the selected store that handles it (the one that pulled
    it, else another selected store of the same account)."""
    for account in dict.fromkeys(store.account for store in stores):
        order = state.orders.find_order(account, order_id)
        if order is None:
            continue
        same = [s for s in stores if s.account == account]
        store = next((s for s in same if s.name == order["store"]), same[0])
        return store, order
    return None


def save_order(state: StateStore, store: StoreSettings, order: Mapping[str, Any]) -> None:
    if isinstance(order.get("order_id"), int):
        row, lines = order_rows(store.account, store.name, order)
        state.orders.save_orders([row], lines)


def line_state_name(state: int | None) -> str:
    if state is None:
        return "missing"
    return f"{LINE_STATE_NAMES.get(state, 'unknown')} (state {state})"
