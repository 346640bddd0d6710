"""orders serials: the rows of a serials file (order, SKU, IMEI, serial number), checked row
by row with the shipments file's rules, then each identifier registered once on its line
(PATCH /ws/orderlines/{id}), typically after the shipment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from syncer.config.stores import StoreSettings
from syncer.core.offers import sku_key
from syncer.errors import OfferError, OutcomeUnknown
from syncer.orders.files import SerialRow, each_row, parse_serials
from syncer.orders.records import IDENTIFIABLE_LINE_STATES, find_order, line_state_name, save_order
from syncer.orders.report import ClientFor, Outcome, StepReport, not_pulled
from syncer.state.store import StateStore


def serials(stores: Sequence[StoreSettings], state: StateStore, client_for: ClientFor,
            path: Path, *, dry_run: bool = False) -> StepReport:
    """Register each valid row's IMEI and serial number on its order line, once."""
    report = StepReport()
    valid, problems = parse_serials(path)
    rows: list[Outcome | SerialRow] = [*problems, *valid]

    def send(item: SerialRow) -> None:
        _serials_one(stores, state, client_for, item, report, dry_run)

    def sku(item: SerialRow) -> str | None:
        return item.sku or None

    return each_row(report, rows, send, sku)


def _serials_one(stores: Sequence[StoreSettings], state: StateStore, client_for: ClientFor,
                 item: SerialRow, report: StepReport, dry_run: bool) -> None:
    row, order_id = item.row, item.order_id
    sku: str | None = item.sku or None

    def fail(field_name: str, message: str, store: str | None = None,
             request_id: str | None = None) -> None:
        report.add(Outcome("failed", store, order_id, sku, row, field_name, message,
                           request_id))

    found = find_order(stores, state, order_id)
    if found is None:
        fail("order_id", not_pulled(order_id))
        return
    store, order = found
    lines = list(order["lines"].values())
    if item.sku:
        line = next((x for x in lines if sku_key(x["sku"]) == sku_key(item.sku)), None)
        if line is None:
            fail("sku", f"order {order_id} has no line with this SKU (it has "
                        f"{', '.join(x['sku'] for x in lines)})", store.name)
            return
    elif len(lines) != 1:
        fail("sku", f"missing; order {order_id} has {len(lines)} lines "
                    f"({', '.join(x['sku'] for x in lines)}): name the line by its SKU",
             store.name)
        return
    else:
        line = lines[0]
    sku = line["sku"]
    if line["quantity"] != 1:
        fail("imei" if item.imei else "serial_number",
             f"an identifier names one device; this line has quantity {line['quantity']} "
             "(Back Market cannot correct it afterwards). Nothing was sent", store.name)
        return
    if line["state"] not in IDENTIFIABLE_LINE_STATES:
        fail("sku", f"the line is {line_state_name(line['state'])}; identifiers are added "
                    "to an accepted or shipped line", store.name)
        return
    record = state.orders.line_identifier(store.account, line["orderline_id"])
    known = {"imei": line.get("imei"), "serial_number": line.get("serial_number")}
    if record is not None:
        known = {name: record[name] or known[name] for name in known}
    wanted = {"imei": item.imei, "serial_number": item.serial_number}
    to_send = _identifiers_to_send(wanted, known)
    if isinstance(to_send, str):
        fail(to_send, _conflict(to_send, known, wanted), store.name)
        return
    if not to_send:
        report.add(Outcome("skipped", store.name, order_id, sku, row,
                           message="already registered on Back Market"))
        return
    what = ", ".join(f"{'IMEI' if k == 'imei' else 'serial'} {v}" for k, v in to_send.items())
    if dry_run:
        report.add(Outcome("would-send", store.name, order_id, sku, row, message=what))
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
    base = {"account": store.account, "orderline_id": line["orderline_id"],
            "order_id": order_id, "store": store.name, "sku": sku}
    live = _live_identifiers(fresh, line["orderline_id"])
    to_send = _identifiers_to_send(to_send, live)
    if isinstance(to_send, str):
        fail(to_send, _conflict(to_send, live, wanted), store.name)
        return
    if not to_send:  # registered in the back office, or by a run whose answer was lost
        state.orders.record_line_identifier({**base, **live, "status": "confirmed"})
        report.add(Outcome("skipped", store.name, order_id, sku, row,
                           message="already registered on Back Market"))
        return
    try:
        client.update_orderline(line["orderline_id"], to_send)
    except OutcomeUnknown as exc:
        live = _live_identifiers(client.get_order(order_id), line["orderline_id"])
        if all(live.get(k) == v for k, v in to_send.items()):
            state.orders.record_line_identifier({**base, **to_send, "status": "confirmed"})
            report.add(Outcome("sent", store.name, order_id, sku, row, message=what))
            return
        message = (f"Back Market's answer was lost ({exc.message}) and the line does not show "
                   "the identifier: the next run sends it")
        state.orders.record_line_identifier({**base, "status": "failed", "error": message})
        fail(next(iter(to_send)), message, store.name)
        return
    except OfferError as exc:
        message = f"Back Market refused: {exc.message}"
        state.orders.record_line_identifier({**base, "status": "failed", "error": message,
                                             "request_id": exc.request_id})
        fail(next(iter(to_send)), message, store.name, exc.request_id)
        return
    state.orders.record_line_identifier({**base, **to_send, "status": "confirmed"})
    report.add(Outcome("sent", store.name, order_id, sku, row, message=what))


def _identifiers_to_send(wanted: Mapping[str, str | None], known: Mapping[str, Any]
                         ) -> dict[str, str] | str:
    """The identifiers still to register, or the name of one already registered with
    another value (Back Market cannot correct it)."""
    to_send: dict[str, str] = {}
    for name, value in wanted.items():
        if not value:
            continue
        current = known.get(name) or None
        if current is None:
            to_send[name] = value
        elif current != value:
            return name
    return to_send


def _conflict(name: str, known: Mapping[str, Any], wanted: Mapping[str, str | None]) -> str:
    label = "IMEI" if name == "imei" else "serial number"
    return (f"the line already has the {label} {known[name]} (this row says {wanted[name]}); "
            "Back Market cannot correct it. Nothing was sent")


def _live_identifiers(order: Mapping[str, Any], orderline_id: int) -> dict[str, str | None]:
    for line in order.get("orderlines") or []:
        if isinstance(line, Mapping) and line.get("id") == orderline_id:
            return {name: (str(line[name]) if line.get(name) else None)
                    for name in ("imei", "serial_number")}
    return {"imei": None, "serial_number": None}
