"""What a merchant changes on an order (``UpdateOrder``): ``POST /ws/orders/{order_id}``
moves one orderline (accept, cancel, refund) or ships the order, ``POST .../invoice``
uploads the invoice, ``PATCH /ws/orderlines/{id}`` registers an IMEI or serial number.
The transitions Back Market allows are those of ``syncer.emulator.orders``' docstring;
anything else is refused (400 ``invalid_transition``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from syncer.core.vocabulary import MAX_SHIPPER, MAX_TRACKING_NUMBER, MAX_TRACKING_URL
from syncer.emulator.http import Call, HttpError, Reply, Router, error_v1
from syncer.emulator.model import sku_key
from syncer.emulator.order_model import (
    LINE_MOVES,
    LINE_STATES,
    MAX_INVOICE_BYTES,
    MAX_RETURN_MESSAGE,
    RETURN_REASONS,
    UPDATE_FIELDS,
    Order,
    identifiers,
    is_int,
    order_state,
    parse_date,
    public_order,
    refused,
)
from syncer.emulator.orders import ORDER_PATH, OrderBook

__all__ = ["OrderUpdates"]


class OrderUpdates:
    """The merchant's changes of the orders of one ``OrderBook`` (under the emulator's lock)."""

    def __init__(self, book: OrderBook) -> None:
        self.book = book

    def install(self, router: Router) -> None:
        router.add("POST", ORDER_PATH, self.post_order)
        router.add("POST", ORDER_PATH + "/invoice", self.post_invoice)
        router.add("PATCH", r"/ws/orderlines/(?P<line>[^/]+)", self.patch_orderline)

    def post_order(self, call: Call) -> Reply:
        order = self.book.find(call)
        body = call.json_object()
        unknown = sorted(set(body) - UPDATE_FIELDS)
        if unknown:
            raise call.bad_request(f"unknown field(s) {', '.join(unknown)}")
        for name in ("order_id", "id"):
            if name in body and (not is_int(body[name]) or body[name] != order.order_id):
                raise call.bad_request(f"{name} must be the order id of the URL, "
                                       f"{order.order_id}")
        new_state = body.get("new_state")
        if not is_int(new_state) or new_state not in LINE_STATES:
            raise call.bad_request("new_state is required: an orderline state, one of "
                                   + ", ".join(map(str, LINE_STATES)))
        if order.state in (0, 10):
            raise refused(f"order {order.order_id} is in state {order.state}: its payment is "
                           "not validated yet; it must not be processed")
        if order.state == 8:
            raise refused(f"order {order.order_id} is not paid (state 8): ignore it")
        if new_state == 3:
            self._ship(call, order, body)
        elif new_state in LINE_MOVES:
            self._move_line(call, order, body, new_state)
        else:
            raise refused(f"new_state {new_state} is not a state a merchant can set; use 2 "
                           "(accept) or 4 (cancel) on a paid line, 3 to ship the order")
        order.date_modification = self.book.now()
        order.state = order_state(order)
        return Reply(200, public_order(order))

    def post_invoice(self, call: Call) -> Reply:
        """The seller's invoice for a paid order: a PDF in the ``invoice`` part of a
        ``multipart/form-data`` body. What Back Market checks of the file is not documented;
        the emulator refuses what is not a PDF, an empty or a 10 MiB+ file."""
        order = self.book.find(call)
        if order.state in (0, 10, 8):
            raise refused(f"order {order.order_id} is in state {order.state}: it is not paid; "
                           "no invoice can be given for it")
        files = _form_files(call)
        invoice = files.get("invoice")
        if not invoice:
            raise call.bad_request("expected a multipart/form-data body with the PDF in a part "
                                   "named invoice")
        data = invoice[0]
        if len(data) > MAX_INVOICE_BYTES:
            raise call.bad_request(f"invoice: at most {MAX_INVOICE_BYTES // 2**20} MiB")
        if not data.startswith(b"%PDF-"):
            raise call.bad_request("invoice: the file is not a PDF")
        order.invoice = data
        order.invoices += 1
        order.date_bill_provided = order.date_modification = self.book.now()
        return Reply(200, {})

    def patch_orderline(self, call: Call) -> Reply:
        ident = call.params["line"]
        order_id = self.book.line_orders.get(int(ident)) if ident.isdigit() else None
        order = None if order_id is None else self.book.own(call.token, order_id)
        if order is None:
            raise HttpError(error_v1(404, "not_found", f"Orderline {ident} not found"))
        line = next(line for line in order.lines if line.id == int(ident))
        body = call.json_object()
        unknown = sorted(set(body) - {"imei", "serial_number"})
        if unknown or not body:
            raise call.bad_request("give imei, serial_number or both, and nothing else")
        imei, serial = identifiers(call, body)
        for name, value, current in (("imei", imei, line.imei),
                                     ("serial_number", serial, line.serial_number)):
            if value is not None and current and value != current:
                raise HttpError(error_v1(422, "already_set", f"{name} of orderline {line.id} is "
                                         "already registered; it cannot be corrected"))
        line.imei = imei or line.imei
        line.serial_number = serial or line.serial_number
        order.date_modification = self.book.now()
        return Reply(200, {"imei": line.imei, "serial_number": line.serial_number})

    def _move_line(self, call: Call, order: Order, body: Mapping[str, Any],
                   new_state: int) -> None:
        sku = body.get("sku")
        if not isinstance(sku, str) or not sku.strip():
            raise call.bad_request(f"sku is required with new_state {new_state}: it names the "
                                   "orderline")
        line = next((line for line in order.lines if sku_key(line.sku) == sku_key(sku)), None)
        if line is None:
            raise HttpError(error_v1(404, "not_found",
                                     f"order {order.order_id} has no orderline with SKU {sku}"))
        expected = LINE_MOVES[new_state]
        if line.state != expected:
            raise refused(f"orderline {line.id} ({line.sku}) is in state {line.state}; "
                           f"new_state {new_state} needs state {expected}")
        if "return_reason" in body:
            reason = body["return_reason"]
            if not is_int(reason) or reason not in RETURN_REASONS:
                raise call.bad_request("return_reason must be one of "
                                       + ", ".join(map(str, RETURN_REASONS)))
            line.return_reason = reason
        message = body.get("return_message")
        if message is not None:
            if not isinstance(message, str) or len(message) > MAX_RETURN_MESSAGE:
                raise call.bad_request(f"return_message: a text of at most "
                                       f"{MAX_RETURN_MESSAGE} characters")
            line.return_message = message
        line.state = new_state
        order.history.append((line.id, new_state))

    def _ship(self, call: Call, order: Order, body: Mapping[str, Any]) -> None:
        if order.state == 9:
            raise refused(f"order {order.order_id} is already processed (state 9); a shipment "
                           "cannot be sent again or corrected")
        if order.state != 3:
            waiting = [line.sku for line in order.lines if line.state == 1]
            raise refused(f"order {order.order_id} is in state {order.state}: accept or cancel "
                           f"its paid lines first ({', '.join(waiting)})")
        tracking = body.get("tracking_number")
        if not isinstance(tracking, str) or not tracking.strip():
            raise call.bad_request("tracking_number is required with new_state 3")
        if len(tracking) > MAX_TRACKING_NUMBER:
            raise call.bad_request(f"tracking_number: at most {MAX_TRACKING_NUMBER} characters")
        url = body.get("tracking_url")
        if url is not None and (not isinstance(url, str) or len(url) > MAX_TRACKING_URL
                                or not re.match(r"https?://[^\s/]+", url)):
            raise call.bad_request(f"tracking_url: an http(s) URL of at most {MAX_TRACKING_URL} "
                                   "characters")
        shipper = body.get("shipper")
        # Free text: the spec's ``Shipper`` list is the known values (real orders carry
        # names such as "Royal Mail Express"), only the length is bounded.
        if shipper is not None and (not isinstance(shipper, str) or not shipper.strip()
                                    or len(shipper) > MAX_SHIPPER):
            raise call.bad_request(f"shipper: a text of 1 to {MAX_SHIPPER} characters")
        shipped_at = self.book.now()
        if "date_shipping" in body:
            shipped_at = parse_date(call, "date_shipping", body["date_shipping"])
        if "vat_type" in body and body["vat_type"] not in ("REGULAR", "MARGINAL"):
            raise call.bad_request("vat_type must be REGULAR or MARGINAL")
        imei, serial = identifiers(call, body)
        if imei is not None or serial is not None:
            if len(order.lines) != 1 or order.lines[0].quantity != 1:
                raise call.bad_request("imei and serial_number are only accepted on an order of "
                                       "one orderline with a quantity of 1")
            line = order.lines[0]
            if line.state != 2:
                raise refused(f"orderline {line.id} is not accepted (state {line.state})")
            line.imei = imei or line.imei
            line.serial_number = serial or line.serial_number
        for line in order.lines:
            if line.state == 2:
                line.state = 3
        for line in order.lines:
            if line.state == 3 and shipper:
                line.shipper = shipper
        order.tracking_number = tracking
        order.tracking_url = url or ""
        order.shipper = shipper or order.shipper
        order.date_shipping = shipped_at
        order.history.append((None, 3))


def _form_files(call: Call) -> dict[str, list[bytes]]:
    """The parts of a ``multipart/form-data`` body, by name (empty when it is not one)."""
    content_type = call.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        return {}
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + call.body)
    if not message.is_multipart():
        return {}
    parts: dict[str, list[bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts.setdefault(name, []).append(payload)
    return parts
