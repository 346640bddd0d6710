"""The emulator's orders: Back Market's order and orderline state machine, in process.

Requests go through ``Emulator.handle`` (the same code the HTTP server runs); every exchange is
checked against the spec at teardown.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncer.emulator.config import EmulatorConfig
from syncer.emulator.emulator import Emulator
from tests.contract import check_exchange

TOKEN = "seller-a"
OTHER = "seller-b"
UA = "BM-Acme-Syncer;ops@acme.example"
IMEI = "490154203237518"
CATALOG = ("sku;ean;grade;quantity;price;warranty_delay\n"
           "A-1;4006381333931;GOOD;5;100.00;12\n"
           "B-2;5901234123457;GOOD;5;50.00;12\n")


class Api:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def __call__(self, method: str, path: str, body: Any = None, *, token: str = TOKEN,
                 locale: str = "fr-fr") -> tuple[int, Any]:
        headers = {"Authorization": f"Basic {token}", "User-Agent": UA,
                   "Accept-Language": locale}
        raw = b"" if body is None else json.dumps(body).encode()
        answer = self.emulator.handle(method, path, headers, raw)
        return answer.status, json.loads(answer.body)

    def update(self, order_id: int, **fields: Any) -> tuple[int, Any]:
        return self("POST", f"/ws/orders/{order_id}", {"id": order_id, "order_id": order_id,
                                                        **fields})


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emulator = Emulator(EmulatorConfig(tokens=(TOKEN, OTHER), task_delay=0))
    yield emulator


@pytest.fixture
def api(emulator: Emulator) -> Iterator[Api]:
    api = Api(emulator)
    for token in (TOKEN, OTHER):
        status, _ = api("POST", "/ws/listings", {"catalog": CATALOG, "delimiter": ";",
                                                 "quotechar": '"', "encoding": "utf-8"},
                        token=token)
        assert status == 200
    emulator.run_due_tasks()
    yield api
    for exchange in emulator.exchanges:
        check_exchange(exchange)


def place(emulator: Emulator, *lines: tuple[str, int], **kwargs: Any) -> int:
    order = emulator.create_order(TOKEN, [{"sku": s, "quantity": q} for s, q in lines],
                                  **kwargs)
    return int(order["order_id"])


def refused(answer: tuple[int, Any], status: int = 400) -> str:
    assert answer[0] == status, answer
    return str(answer[1]["error"]["message"])


def test_a_paid_line_is_accepted_once_and_accepting_again_is_refused(
        emulator: Emulator, api: Api) -> None:
    order = place(emulator, ("A-1", 1), ("B-2", 1))
    status, body = api.update(order, new_state=2, sku="a-1")
    assert status == 200 and body["state"] == 1  # B-2 still waits
    assert [line["state"] for line in body["orderlines"]] == [2, 1]
    assert "is in state 2; new_state 2 needs state 1" in refused(
        api.update(order, new_state=2, sku="A-1"))
    assert "new_state 4 needs state 1" in refused(api.update(order, new_state=4, sku="A-1"))
    status, body = api.update(order, new_state=4, sku="B-2")
    assert body["state"] == 3  # every line decided, one to ship


def test_shipping_waits_for_every_paid_line_and_happens_once(
        emulator: Emulator, api: Api) -> None:
    order = place(emulator, ("A-1", 1))
    assert "accept or cancel its paid lines first (A-1)" in refused(
        api.update(order, new_state=3, tracking_number="T1"))
    api.update(order, new_state=2, sku="A-1")
    assert "tracking_number is required" in refused(api.update(order, new_state=3))
    status, body = api.update(order, new_state=3, tracking_number="T1", shipper="UPS",
                              tracking_url="https://ups.example/T1", imei=IMEI,
                              date_shipping="2030-01-02T03:04:05Z")
    assert status == 200 and body["state"] == 9
    assert (body["tracking_number"], body["shipper_display"], body["date_shipping"]) == \
        ("T1", "UPS", "2030-01-02T03:04:05.000000Z")
    assert (body["orderlines"][0]["state"], body["orderlines"][0]["imei"]) == (3, IMEI)
    assert "already processed" in refused(api.update(order, new_state=3, tracking_number="T2"))


@pytest.mark.parametrize(("lines", "imei", "message"), [
    ((("A-1", 1), ("B-2", 1)), IMEI, "only accepted on an order of one orderline"),
    ((("A-1", 2),), IMEI, "only accepted on an order of one orderline"),
    ((("A-1", 1),), "490154203237517", "is not a valid IMEI"),
])
def test_imei_is_refused_unless_valid_on_one_line_of_quantity_1(
        emulator: Emulator, api: Api, lines: tuple[tuple[str, int], ...], imei: str,
        message: str) -> None:
    order = place(emulator, *lines)
    for sku, _ in lines:
        api.update(order, new_state=2, sku=sku)
    assert message in refused(api.update(order, new_state=3, tracking_number="T", imei=imei))
    assert emulator.order(TOKEN, order)["state"] == 3  # type: ignore[index]


def test_shipper_is_free_text_of_at_most_200_characters(emulator: Emulator,
                                                        api: Api) -> None:
    # Real orders carry shippers outside the spec's list ("Royal Mail Express"): the list
    # is the known values, not a closed enum; only the length is bounded.
    order = place(emulator, ("A-1", 1))
    api.update(order, new_state=2, sku="A-1")
    assert "shipper: a text of 1 to 200 characters" in refused(
        api.update(order, new_state=3, tracking_number="T", shipper="P" * 201))
    del emulator.exchanges[-1]  # outside the spec on purpose: not for the contract check
    assert emulator.order(TOKEN, order)["state"] == 3  # type: ignore[index]
    status, body = api.update(order, new_state=3, tracking_number="T",
                              shipper="Royal Mail Express")
    assert (status, body["shipper"], body["shipper_display"]) == \
        (200, "Royal Mail Express", "Royal Mail Express")
    assert body["orderlines"][0]["shipper"] == "Royal Mail Express"


def test_orders_have_the_shapes_real_integrations_see(emulator: Emulator, api: Api) -> None:
    order = place(emulator, ("A-1", 1), customer={"firstName": "Ada", "postal_code": "1000"})
    status, body = api("GET", f"/ws/orders/{order}")
    assert status == 200
    for name in ("shipping_address", "billing_address"):
        address = body[name]
        assert set(address) == {"first_name", "last_name", "street", "street2", "postal_code",
                                "city", "country", "phone", "email", "company",
                                "customer_id_number"}
        assert (address["first_name"], address["postal_code"]) == ("Ada", "1000")
    assert (body["tracking_number"], body["tracking_url"], body["shipper"]) == ("", "", "")
    assert body["date_bill_provided"] is None
    [line] = body["orderlines"]
    assert (line["return_reason"], line["return_message"], line["imei"],
            line["serial_number"], line["shipper"]) == (0, "", "", "", "")
    assert (line["listing"], line["condition"]) == ("A-1", 11)  # a GOOD listing
    assert isinstance(line["listing_id"], int) and isinstance(line["product_id"], int)


def test_merchant_cannot_set_states_outside_the_table(emulator: Emulator, api: Api) -> None:
    order = place(emulator, ("A-1", 1))
    assert "not a state a merchant can set" in refused(api.update(order, new_state=7,
                                                                  sku="A-1"))
    assert "sku is required" in refused(api.update(order, new_state=2))
    assert "has no orderline with SKU Z" in refused(api.update(order, new_state=2, sku="Z"),
                                                    404)
    assert "order id of the URL" in refused(api("POST", f"/ws/orders/{order}", {
        "id": order + 1, "new_state": 2, "sku": "A-1"}))


def test_order_waiting_for_payment_cannot_be_processed(emulator: Emulator, api: Api) -> None:
    order = place(emulator, ("A-1", 1), state=10)
    assert "payment is not validated yet" in refused(api.update(order, new_state=2, sku="A-1"))
    assert emulator.listing(TOKEN, "A-1", "fr-fr")["quantity"] == 5  # type: ignore[index]
    paid = emulator.settle_order(TOKEN, order)
    assert (paid["state"], paid["orderlines"][0]["state"]) == (1, 1)
    assert emulator.listing(TOKEN, "A-1", "fr-fr")["quantity"] == 4  # type: ignore[index]


def test_paid_order_takes_the_listing_stock_and_cannot_exceed_it(emulator: Emulator,
                                                                 api: Api) -> None:
    place(emulator, ("A-1", 2), ("B-2", 1))
    assert emulator.listing(TOKEN, "A-1", "de-de")["quantity"] == 3  # type: ignore[index]
    assert emulator.listing(TOKEN, "B-2", "de-de")["quantity"] == 4  # type: ignore[index]
    with pytest.raises(ValueError, match="only 3 of A-1 in stock"):
        place(emulator, ("B-2", 1), ("A-1", 4))
    assert emulator.listing(TOKEN, "B-2", "de-de")["quantity"] == 4  # type: ignore[index]


def test_order_with_every_line_cancelled_is_processed_without_a_shipment(
        emulator: Emulator, api: Api) -> None:
    order = place(emulator, ("A-1", 1))
    status, body = api.update(order, new_state=4, sku="A-1", return_reason=0)
    assert (status, body["state"], body["orderlines"][0]["return_reason"]) == (200, 9, 0)
    assert "date_shipping" not in body and body["tracking_number"] == ""


def test_a_seller_sees_only_its_own_orders(emulator: Emulator, api: Api) -> None:
    order = place(emulator, ("A-1", 1))
    assert "not found" in refused(api("GET", f"/ws/orders/{order}", token=OTHER), 404)
    assert "not found" in refused(api("POST", f"/ws/orders/{order}", {
        "id": order, "new_state": 2, "sku": "A-1"}, token=OTHER), 404)
    assert api("GET", "/ws/orders", token=OTHER)[1]["count"] == 0
    assert "must be an integer" in refused(api("GET", "/ws/orders/abc"))


def test_list_hides_new_and_unpaid_orders_and_filters_and_pages(
        emulator: Emulator, api: Api) -> None:
    book = emulator.order_book
    start = datetime(2030, 1, 1, tzinfo=UTC)
    book.now = lambda: start
    hidden = place(emulator, ("A-1", 1), state=0)
    failed = place(emulator, ("A-1", 1), state=10)
    emulator.settle_order(TOKEN, failed, paid=False)
    french = [place(emulator, ("B-2", 1)) for _ in range(3)]
    book.now = lambda: start + timedelta(hours=1)
    german = emulator.create_order(TOKEN, [{"sku": "A-1", "quantity": 1, "price": "95.00"}],
                                   country="de-de")["order_id"]
    status, body = api("GET", "/ws/orders?page-size=2")
    assert (status, body["count"], body["previous"]) == (200, 4, None)
    assert [o["order_id"] for o in body["results"]] == french[:2]
    status, body = api("GET", body["next"].split("127.0.0.1", 1)[-1])
    assert [o["order_id"] for o in body["results"]] == [french[2], german]
    assert body["next"] is None
    ids = [o["order_id"] for o in api("GET", "/ws/orders?country_code=de-de")[1]["results"]]
    assert ids == [german]
    since = api("GET", "/ws/orders?date_modification=2030-01-01T00:30:00%2B00:00")[1]
    assert [o["order_id"] for o in since["results"]] == [german]
    # The real API ignores page_size (it answered its default of 10 to page_size=100).
    assert len(api("GET", "/ws/orders?page_size=1")[1]["results"]) == 4
    assert api("GET", "/ws/orders?state=0")[1]["count"] == 0
    assert emulator.order(TOKEN, hidden)["state"] == 0  # type: ignore[index]
    assert "must be an RFC 3339 date-time" in refused(
        api("GET", "/ws/orders?date_modification=yesterday"))
    assert "country_code must be one of" in refused(api("GET", "/ws/orders?country_code=fr"))


def test_orderline_identifiers_are_set_once(emulator: Emulator, api: Api) -> None:
    order = place(emulator, ("A-1", 1))
    line = emulator.order(TOKEN, order)["orderlines"][0]["id"]  # type: ignore[index]
    assert api("PATCH", f"/ws/orderlines/{line}", {"serial_number": "SN1"}) == \
        (200, {"imei": "", "serial_number": "SN1"})
    assert api("PATCH", f"/ws/orderlines/{line}", {"serial_number": "SN1", "imei": IMEI}) == \
        (200, {"imei": IMEI, "serial_number": "SN1"})
    assert "cannot be corrected" in refused(
        api("PATCH", f"/ws/orderlines/{line}", {"serial_number": "SN2"}), 422)
    assert "not found" in refused(api("PATCH", f"/ws/orderlines/{line}", {"imei": IMEI},
                                      token=OTHER), 404)


def test_admin_endpoint_places_orders_and_reset_forgets_them(emulator: Emulator,
                                                             api: Api) -> None:
    answer = emulator.handle("POST", "/_emulator/orders", {}, json.dumps({
        "token": TOKEN, "country_code": "fr-be", "lines": [{"sku": "A-1", "quantity": 1,
                                                           "price": "90.00"}]}).encode())
    order = json.loads(answer.body)
    assert (answer.status, order["country_code"], order["price"]) == (200, "fr-be", "90.00")
    missing = emulator.handle("POST", "/_emulator/orders", {}, json.dumps({
        "lines": [{"sku": "NOPE", "quantity": 1}]}).encode())
    assert missing.status == 404
    listed = json.loads(emulator.handle("GET", f"/_emulator/orders?token={TOKEN}", {}).body)
    assert [o["order_id"] for o in listed] == [order["order_id"]]
    emulator.reset()
    assert emulator.orders(TOKEN) == []


def multipart(parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> tuple[str, bytes]:
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="f.pdf"\r\n'
        f"Content-Type: application/pdf\r\n\r\n".encode() + data + b"\r\n"
        for name, data in parts) + f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def test_an_invoice_is_a_pdf_uploaded_for_a_paid_order(emulator: Emulator, api: Api) -> None:
    order = place(emulator, ("A-1", 1))
    waiting = place(emulator, ("B-2", 1), state=10)
    book = emulator.order_book
    book.now = lambda: datetime(2030, 3, 1, 9, 0, tzinfo=UTC)

    def upload(order_id: int, parts: list[tuple[str, bytes]]) -> tuple[int, Any]:
        content_type, body = multipart(parts)
        answer = emulator.handle("POST", f"/ws/orders/{order_id}/invoice", {
            "Authorization": f"Basic {TOKEN}", "User-Agent": UA, "Content-Type": content_type},
            body)
        return answer.status, json.loads(answer.body)

    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\r\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    assert "not a PDF" in refused(upload(order, [("invoice", b"GIF89a")]))
    assert "part named invoice" in refused(upload(order, [("file", pdf)]))
    del emulator.exchanges[-1]  # outside the spec on purpose: not for the contract check
    assert "it is not paid" in refused(upload(waiting, [("invoice", pdf)]))
    assert "not found" in refused(upload(999, [("invoice", pdf)]), 404)
    assert emulator.order(TOKEN, order)["date_bill_provided"] is None  # type: ignore[index]
    assert upload(order, [("invoice", pdf)])[0] == 200
    assert book.invoice(TOKEN, order) == (pdf, 1)
    shown = emulator.order(TOKEN, order)
    assert shown is not None and shown["date_bill_provided"] == "2030-03-01T09:00:00.000000Z"
