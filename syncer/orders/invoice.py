"""orders invoice: the rows of an invoices file (order, PDF), checked row by row, then each
PDF uploaded once as the order's invoice (POST /ws/orders/{id}/invoice).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from syncer.config.stores import StoreSettings
from syncer.errors import OfferError
from syncer.orders.files import InvoiceRow, each_row, parse_invoices
from syncer.orders.records import ORDER_STATE_NAMES, UNPAID_ORDER_STATES, find_order, save_order
from syncer.orders.report import ClientFor, Outcome, StepReport, not_pulled
from syncer.state.store import StateStore


def invoice(stores: Sequence[StoreSettings], state: StateStore, client_for: ClientFor,
            path: Path, *, dry_run: bool = False) -> StepReport:
    """Send each valid row's PDF as the order's invoice, once; bad rows are reported."""
    report = StepReport()
    valid, problems = parse_invoices(path)
    rows: list[Outcome | InvoiceRow] = [*problems, *valid]

    def send(item: InvoiceRow) -> None:
        _invoice_one(stores, state, client_for, item, report, dry_run)

    return each_row(report, rows, send)


def _invoice_one(stores: Sequence[StoreSettings], state: StateStore, client_for: ClientFor,
                 item: InvoiceRow, report: StepReport, dry_run: bool) -> None:
    row, order_id = item.row, item.order_id

    def fail(field_name: str, message: str, store: str | None = None,
             request_id: str | None = None) -> None:
        report.add(Outcome("failed", store, order_id, row=row, field=field_name,
                           message=message, request_id=request_id))

    found = find_order(stores, state, order_id)
    if found is None:
        fail("order_id", not_pulled(order_id))
        return
    store, order = found
    done = state.orders.invoice(store.account, order_id)
    if done is not None and done["status"] == "confirmed":
        note = f"invoice already sent ({done['path']})"
        if done["sha256"] is not None and done["sha256"] != _sha256(item.path):
            note += f"; this row's file {item.named} differs: an invoice is sent once"
        report.add(Outcome("skipped", store.name, order_id, row=row, message=note))
        return
    if order["state"] in UNPAID_ORDER_STATES:
        fail("order_id", f"the order is {ORDER_STATE_NAMES.get(order['state'], 'unpaid')}: "
                         "an invoice is given for a paid order", store.name)
        return
    what = f"invoice {item.named} ({max(1, item.size // 1024)} KiB)"
    if dry_run:
        report.add(Outcome("would-send", store.name, order_id, row=row, message=what))
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
    record = {"account": store.account, "order_id": order_id, "store": store.name,
              "path": item.named, "sha256": None, "size": item.size}
    if fresh.get("date_bill_provided"):
        # Given in the back office, or sent by a run whose answer was lost: not sent twice.
        state.orders.record_invoice({**record, "status": "confirmed", "error": (
            f"Back Market already had an invoice (date_bill_provided "
            f"{fresh['date_bill_provided']})")})
        report.add(Outcome("skipped", store.name, order_id, row=row, message=(
            f"Back Market already has an invoice for this order (given "
            f"{fresh['date_bill_provided']}); not sent again")))
        return
    try:
        pdf = item.path.read_bytes()
    except OSError as exc:
        fail("path", f"{item.named}: cannot be read ({exc.strerror})", store.name)
        return
    record["sha256"], record["size"] = hashlib.sha256(pdf).hexdigest(), len(pdf)
    try:
        client.upload_invoice(order_id, pdf, item.path.name)
    except OfferError as exc:
        message = f"Back Market refused the invoice: {exc.message}"
        state.orders.record_invoice({**record, "status": "failed", "error": message,
                                     "request_id": exc.request_id})
        fail("path", message, store.name, exc.request_id)
        return
    state.orders.record_invoice({**record, "status": "confirmed"})
    report.add(Outcome("sent", store.name, order_id, row=row, message=what))


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
