"""Orders as Back Market last showed them, and what the syncer did about them: line actions,
shipments, invoices, identifiers, and each store's pull watermark.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select

from syncer.core.secrets import scrub
from syncer.state.database import BULK, Database, upsert
from syncer.state.schema import (
    IDENTIFIERS,
    INVOICES,
    LINE_ACTIONS,
    ORDER_LINES,
    ORDER_PULLS,
    ORDERS,
    SHIPMENTS,
    aware,
    utcnow,
)


class OrderStore:
    """Orders, their lines and what was sent about them (``state.orders``). A confirmed
    shipment, invoice or identifier is final: a later failure never overwrites it."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save_orders(self, orders: Sequence[dict[str, Any]],
                    lines: Sequence[dict[str, Any]]) -> None:
        """Upsert orders and their lines as Back Market last showed them, in one
        transaction. An order keeps the store that first pulled it. Rows of one call must
        all have the same columns."""
        if not orders and not lines:
            return
        with self.db.write() as conn:
            for table, rows, keys, fixed in (
                (ORDERS, orders, ("account", "order_id"), ("store",)),
                (ORDER_LINES, lines, ("account", "orderline_id"), ()),
            ):
                for start in range(0, len(rows), BULK):
                    chunk = list(rows[start:start + BULK])
                    update = [c for c in chunk[0] if c not in (*keys, *fixed)]
                    upsert(conn, table, chunk, keys, update)

    def order_hashes(self, account: str, order_ids: Sequence[int]) -> dict[int, str]:
        """order_id -> content hash of the orders already in the state."""
        if self.db.empty or not order_ids:
            return {}
        found: dict[int, str] = {}
        with self.db.read() as conn:
            for start in range(0, len(order_ids), BULK):
                rows = conn.execute(select(ORDERS.c.order_id, ORDERS.c.content_hash).where(
                    ORDERS.c.account == account,
                    ORDERS.c.order_id.in_(order_ids[start:start + BULK])))
                found.update({int(i): h for i, h in rows})
        return found

    def find_order(self, account: str, order_id: int) -> dict[str, Any] | None:
        """The order's row with its ``lines`` (by orderline id), or None."""
        orders = self._orders_where(and_(ORDERS.c.account == account,
                                         ORDERS.c.order_id == order_id))
        return orders[0] if orders else None

    def orders_in_state(self, stores: Sequence[str], state: int) -> list[dict[str, Any]]:
        """Orders first pulled by these stores and in this order state, with their lines,
        oldest payment first."""
        if not stores:
            return []
        return self._orders_where(and_(ORDERS.c.store.in_(list(stores)),
                                       ORDERS.c.state == state))

    def order_line_units(self, account: str, states: Iterable[int]
                         ) -> list[tuple[str, int, int]]:
        """(sku, quantity, line state) of the account's pulled order lines in these line
        states, whichever store pulled them (stock is global)."""
        if self.db.empty:
            return []
        if not self.db.has_table(ORDER_LINES):
            return []  # a state made before orders existed, opened read-only by a plan
        with self.db.read() as conn:
            rows = conn.execute(select(
                ORDER_LINES.c.sku, ORDER_LINES.c.quantity, ORDER_LINES.c.state).where(
                ORDER_LINES.c.account == account,
                ORDER_LINES.c.state.in_(sorted(states))))
            return [(str(sku), int(quantity), int(state)) for sku, quantity, state in rows]

    def _orders_where(self, condition: Any) -> list[dict[str, Any]]:
        if self.db.empty:
            return []
        with self.db.read() as conn:
            orders = [
                _aware_row(row._asdict()) for row in conn.execute(
                    select(ORDERS).where(condition).order_by(
                        ORDERS.c.date_payment, ORDERS.c.order_id))
            ]
            for order in orders:
                lines = conn.execute(select(ORDER_LINES).where(
                    ORDER_LINES.c.account == order["account"],
                    ORDER_LINES.c.order_id == order["order_id"],
                ).order_by(ORDER_LINES.c.orderline_id))
                order["lines"] = {int(line.orderline_id): line._asdict() for line in lines}
        return orders

    def line_actions(self, account: str, order_id: int) -> dict[int, dict[str, Any]]:
        """orderline_id -> the last action recorded on each line of the order."""
        if self.db.empty:
            return {}
        with self.db.read() as conn:
            rows = conn.execute(select(LINE_ACTIONS).where(
                LINE_ACTIONS.c.account == account, LINE_ACTIONS.c.order_id == order_id))
            return {int(r.orderline_id): _aware_row(r._asdict()) for r in rows}

    def record_line_action(self, account: str, orderline_id: int, order_id: int, sku: str,
                           action: str, status: str, reason: str | None = None,
                           request_id: str | None = None) -> None:
        """What was done or decided about a line; failed attempts are counted."""
        with self.db.write() as conn:
            before = conn.execute(select(LINE_ACTIONS.c.attempts, LINE_ACTIONS.c.status).where(
                LINE_ACTIONS.c.account == account,
                LINE_ACTIONS.c.orderline_id == orderline_id)).first()
            attempts = 0
            if status == "failed":
                attempts = 1 + (before.attempts if before and before.status == "failed" else 0)
            row = {"account": account, "orderline_id": orderline_id, "order_id": order_id,
                   "sku": sku, "action": action, "status": status,
                   "reason": reason and scrub(reason), "request_id": request_id and scrub(
                       request_id), "attempts": attempts, "updated_at": utcnow()}
            upsert(conn, LINE_ACTIONS, [row], ("account", "orderline_id"),
                    [c for c in row if c not in ("account", "orderline_id")])

    def shipment(self, account: str, order_id: int) -> dict[str, Any] | None:
        if self.db.empty:
            return None
        with self.db.read() as conn:
            row = conn.execute(select(SHIPMENTS).where(
                SHIPMENTS.c.account == account, SHIPMENTS.c.order_id == order_id)).first()
        return None if row is None else _aware_row(row._asdict())

    def record_shipment(self, shipment: dict[str, Any]) -> None:
        """A shipment's outcome (``status`` "confirmed" or "failed"). A confirmed shipment
        is final: it is never overwritten by a later failure."""
        with self.db.write() as conn:
            before = conn.execute(select(SHIPMENTS.c.status, SHIPMENTS.c.attempts).where(
                SHIPMENTS.c.account == shipment["account"],
                SHIPMENTS.c.order_id == shipment["order_id"])).first()
            if before is not None and before.status == "confirmed":
                return
            now = utcnow()
            confirmed = shipment["status"] == "confirmed"
            row = {**shipment, "updated_at": now,
                   "confirmed_at": now if confirmed else None,
                   "attempts": 0 if confirmed else 1 + (before.attempts if before else 0)}
            upsert(conn, SHIPMENTS, [row], ("account", "order_id"),
                    [c for c in row if c not in ("account", "order_id")])

    def invoice(self, account: str, order_id: int) -> dict[str, Any] | None:
        if self.db.empty:
            return None
        with self.db.read() as conn:
            row = conn.execute(select(INVOICES).where(
                INVOICES.c.account == account, INVOICES.c.order_id == order_id)).first()
        return None if row is None else _aware_row(row._asdict())

    def record_invoice(self, invoice: dict[str, Any]) -> None:
        """An invoice upload's outcome (``status`` "confirmed" or "failed"). A confirmed
        invoice is final: a later failure never overwrites it."""
        with self.db.write() as conn:
            before = conn.execute(select(INVOICES.c.status, INVOICES.c.attempts).where(
                INVOICES.c.account == invoice["account"],
                INVOICES.c.order_id == invoice["order_id"])).first()
            if before is not None and before.status == "confirmed":
                return
            now = utcnow()
            confirmed = invoice["status"] == "confirmed"
            row = {**invoice, "updated_at": now, "confirmed_at": now if confirmed else None,
                   "error": invoice.get("error") and scrub(invoice["error"]),
                   "attempts": 0 if confirmed else 1 + (before.attempts if before else 0)}
            upsert(conn, INVOICES, [row], ("account", "order_id"),
                    [c for c in row if c not in ("account", "order_id")])

    def line_identifier(self, account: str, orderline_id: int) -> dict[str, Any] | None:
        if self.db.empty:
            return None
        with self.db.read() as conn:
            row = conn.execute(select(IDENTIFIERS).where(
                IDENTIFIERS.c.account == account,
                IDENTIFIERS.c.orderline_id == orderline_id)).first()
        return None if row is None else _aware_row(row._asdict())

    def record_line_identifier(self, record: dict[str, Any]) -> None:
        """The outcome of registering identifiers on a line. Confirmed values are kept: a
        confirmation adds to them (an IMEI then a serial number), a failure never clears
        them."""
        with self.db.write() as conn:
            before = conn.execute(select(IDENTIFIERS).where(
                IDENTIFIERS.c.account == record["account"],
                IDENTIFIERS.c.orderline_id == record["orderline_id"])).first()
            now = utcnow()
            confirmed = record["status"] == "confirmed"
            kept = {name: getattr(before, name) if before is not None else None
                    for name in ("imei", "serial_number", "confirmed_at")}
            row = {**record, "updated_at": now,
                   "error": record.get("error") and scrub(record["error"]),
                   "attempts": 0 if confirmed else 1 + (before.attempts if before else 0)}
            for name in ("imei", "serial_number"):
                row[name] = (record.get(name) if confirmed else None) or kept[name]
            row["confirmed_at"] = now if confirmed else kept["confirmed_at"]
            upsert(conn, IDENTIFIERS, [row], ("account", "orderline_id"),
                    [c for c in row if c not in ("account", "orderline_id")])

    def order_watermark(self, store: str, scope: str) -> datetime | None:
        """The latest ``date_modification`` the store's last successful pull saw."""
        if self.db.empty:
            return None
        with self.db.read() as conn:
            found = conn.execute(select(ORDER_PULLS.c.watermark).where(
                ORDER_PULLS.c.store == store, ORDER_PULLS.c.scope == scope)).scalar()
        return None if found is None else aware(found)

    def set_order_watermark(self, store: str, scope: str, watermark: datetime | None) -> None:
        row = {"store": store, "scope": scope, "watermark": watermark, "pulled_at": utcnow()}
        with self.db.write() as conn:
            upsert(conn, ORDER_PULLS, [row], ("store", "scope"), ["watermark", "pulled_at"])


def _aware_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: aware(v) if isinstance(v, datetime) else v for k, v in row.items()}
