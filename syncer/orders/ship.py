"""orders ship: the rows of a shipments file (order, carrier, tracking, IMEI or serial
number), checked row by row, then each order shipped (new_state 3) once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from syncer.config.settings import Settings
from syncer.config.stores import StoreSettings
from syncer.errors import OfferError
from syncer.orders.files import Shipment, each_row, parse_shipments
from syncer.orders.records import (
    LINE_PAID,
    LINE_SHIPPED,
    ORDER_DONE,
    ORDER_NEW,
    ORDER_NOT_PAID,
    ORDER_PAID,
    ORDER_PENDING_PAYMENT,
    ORDER_TO_SHIP,
    find_order,
    save_order,
)
from syncer.orders.report import ClientFor, Outcome, StepReport, not_pulled
from syncer.planning.mapping import Profile
from syncer.state.store import StateStore


def ship(settings: Settings, stores: Sequence[StoreSettings], state: StateStore,
         client_for: ClientFor, profile: Profile, path: Path, *,
         dry_run: bool = False) -> StepReport:
    """Ship each valid row of a shipments file; every bad row is reported and skipped."""
    report = StepReport()
    shipments, problems = parse_shipments(path, profile, settings.orders.carrier_fallback)
    rows: list[Outcome | Shipment] = [*problems, *shipments]

    def send(item: Shipment) -> None:
        _ship_one(stores, state, client_for, item, report, dry_run)

    return each_row(report, rows, send)


def _ship_one(stores: Sequence[StoreSettings], state: StateStore, client_for: ClientFor,
              shipment: Shipment, report: StepReport, dry_run: bool) -> None:
    row, order_id = shipment.row, shipment.order_id

    def fail(field_name: str, message: str, store: str | None = None,
             request_id: str | None = None) -> None:
        report.add(Outcome("failed", store, order_id, row=row, field=field_name,
                           message=message, request_id=request_id))

    found = find_order(stores, state, order_id)
    if found is None:
        fail("order_id", not_pulled(order_id))
        return
    store, order = found
    done = state.orders.shipment(store.account, order_id)
    if done is not None and done["status"] == "confirmed":
        note = "already shipped"
        if done["tracking_number"] != shipment.tracking_number:
            note += (f" with tracking {done['tracking_number']} (this row says "
                     f"{shipment.tracking_number}; Back Market cannot correct a shipment)")
        report.add(Outcome("skipped", store.name, order_id, row=row, message=note))
        return
    lines = list(order["lines"].values())
    for name, value in (("imei", shipment.imei), ("serial_number", shipment.serial_number)):
        if value and (len(lines) != 1 or lines[0]["quantity"] != 1):
            shape = (f"{len(lines)} lines" if len(lines) != 1
                     else f"one line of quantity {lines[0]['quantity']}")
            article = "an" if name == "imei" else "a"
            fail(name, f"{article} {name} is only sent for an order of one line of quantity 1 "
                       f"(Back Market cannot correct it afterwards); order {order_id} has {shape}. "
                       "Nothing was sent: leave it empty to ship without it", store.name)
            return
    problem = _not_shippable(order["state"], lines)
    # A processed order that shipped something is looked at on Back Market (this very
    # tracking: already done); one whose lines are all cancelled has nothing to ship.
    if problem is not None and (order["state"] != ORDER_DONE or not _shipped_any(lines)):
        fail("order_id", problem, store.name)
        return
    what = (f"{shipment.shipper}" + (f" (carrier {shipment.carrier!r}, fallback)"
                                     if shipment.fallback else "")
            + f", tracking {shipment.tracking_number}"
            + (f", IMEI {shipment.imei}" if shipment.imei else "")
            + (f", serial {shipment.serial_number}" if shipment.serial_number else ""))
    if dry_run:
        report.add(Outcome("would-ship", store.name, order_id, row=row, message=what))
        return
    client = client_for(store)
    try:
        fresh = client.get_order(order_id)
    except OfferError as exc:
        if exc.status == 404:
            fail("order_id", f"order {order_id} is unknown to Back Market ({exc.message})",
                 store.name, exc.request_id)
            return
        raise
    save_order(state, store, fresh)
    fresh_lines = [line for line in fresh.get("orderlines") or [] if isinstance(line, dict)]
    if fresh.get("state") == ORDER_DONE and not _shipped_any(fresh_lines):
        fail("order_id", str(_not_shippable(ORDER_DONE, fresh_lines)), store.name)
        return
    if fresh.get("state") == ORDER_DONE:
        if fresh.get("tracking_number") == shipment.tracking_number:
            _record_shipment(state, store, shipment, "confirmed")
            report.add(Outcome("skipped", store.name, order_id, row=row,
                               message="already shipped on Back Market with this tracking"))
        else:
            fail("order_id", f"order {order_id} is already processed on Back Market"
                             + (f" (tracking {fresh['tracking_number']})"
                                if fresh.get("tracking_number") else "")
                             + "; a shipment cannot be sent twice or corrected", store.name)
        return
    problem = _not_shippable(int(fresh.get("state", -1)),
                             [{"state": line.get("state")} for line in fresh_lines])
    if problem is not None:
        fail("order_id", problem, store.name)
        return
    body: dict[str, Any] = {"new_state": LINE_SHIPPED, "tracking_number": shipment.tracking_number,
                            "shipper": shipment.shipper}
    if shipment.tracking_url:
        body["tracking_url"] = shipment.tracking_url
    if shipment.imei:
        body["imei"] = shipment.imei
    if shipment.serial_number:
        body["serial_number"] = shipment.serial_number
    try:
        answer = client.update_order(order_id, body, applied=lambda o: (
            o.get("state") == ORDER_DONE and o.get("tracking_number") == shipment.tracking_number))
    except OfferError as exc:
        message = f"Back Market refused the shipment: {exc.message}"
        _record_shipment(state, store, shipment, "failed", message, exc.request_id)
        fail("order_id", message, store.name, exc.request_id)
        return
    save_order(state, store, answer)
    _record_shipment(state, store, shipment, "confirmed")
    report.add(Outcome("shipped", store.name, order_id, row=row, message=what))


def _shipped_any(lines: Sequence[Mapping[str, Any]]) -> bool:
    return any(line.get("state") in (LINE_SHIPPED, 6) for line in lines)


def _not_shippable(order_state: int, lines: Sequence[Mapping[str, Any]]) -> str | None:
    """Why an order in this state cannot be shipped, or None."""
    if order_state == ORDER_TO_SHIP:
        return None
    if order_state == ORDER_PAID:
        waiting = sum(1 for line in lines if line.get("state") == LINE_PAID)
        return (f"the order still has {waiting} paid line(s) to accept or cancel; run "
                "`syncer orders accept` first")
    if order_state in (ORDER_NEW, ORDER_PENDING_PAYMENT):
        return "the order's payment is not validated yet: it must not be shipped"
    if order_state == ORDER_NOT_PAID:
        return "the order was not paid: ignore it"
    if order_state == ORDER_DONE:
        if not _shipped_any(lines):
            return "the order is processed without anything to ship (its lines are cancelled)"
        return "the order is already shipped"
    return f"the order is in state {order_state}, not to ship"


def _record_shipment(state: StateStore, store: StoreSettings, shipment: Shipment, status: str,
                     error: str | None = None, request_id: str | None = None) -> None:
    state.orders.record_shipment({
        "account": store.account, "order_id": shipment.order_id, "store": store.name,
        "carrier": shipment.carrier[:200], "shipper": shipment.shipper,
        "tracking_number": shipment.tracking_number, "tracking_url": shipment.tracking_url,
        "imei": shipment.imei, "serial_number": shipment.serial_number, "status": status,
        "error": error, "request_id": request_id,
    })
