"""Back Market as production integrations see it (reference/BACKMARKET.md, "Observed in
production integrations"), where it differs from the spec or the spec is silent: the client
reads real-shaped answers, and the emulator answers and refuses as the real API does."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from syncer.backmarket.answers import ListingPage, checked
from syncer.backmarket.client import BackMarketClient
from syncer.backmarket.transport import Transport
from syncer.config.stores import StoreSettings
from syncer.core.offers import Offer
from syncer.core.snapshot import SnapshotEntry
from syncer.emulator.server import EmulatorServer
from syncer.planning.changes import Change
from syncer.publish.batches import batch_files
from syncer.publish.readback import listing_matches
from syncer.publish.reconcile import observed, reconcile
from tests.conftest import HEADER, TOKEN, catalog_row, write_catalog
from tests.contract import check_response
from tests.helpers import FakeClock, Shop, checked_emulator

UA = "BM-Tests-suite;tests@example.com"

# A listing with the keys and types of the real API's GET /ws/listings results (values made
# up): max_price a number, min_price null, state beside grade, a negative quantity.
REAL_LISTING: dict[str, object] = {
    "id": "3f2c9a57-5d0e-4b8e-9a57-0c1d2e3f4a5b", "listing_id": 4567,
    "sku": "IP13-128-MID-C", "title": "iPhone 13 - 128 GB - Midnight - Unlocked",
    "state": 3, "grade": "FAIR", "price": "199.00", "min_price": None, "max_price": 199,
    "quantity": -1, "publication_state": 3, "comment": "Boxed", "warranty_delay": 12,
    "shippings": [], "currency": "EUR", "backmarket_id": 123456,
    "product_id": "9b1e7c2a-4d3f-4e5a-8b6c-7d8e9f0a1b2c", "snowden": False,
}


def offer(**fields: object) -> Offer:
    values: dict[str, object] = {
        "store": "fr", "row": 2, "sku": "IP13-128-MID-C", "product_id": None,
        "ean": "4006381333931", "grade": "FAIR", "quantity": 5, "price": Decimal("199"),
        "currency": "EUR", "warranty_delay": 12, "comment": "Boxed",
        "max_price": Decimal("199")}
    values.update(fields)
    return Offer(**values)  # type: ignore[arg-type]


def test_a_real_shaped_listing_page_is_read_as_given() -> None:
    page = {"count": 1, "next": None, "previous": None, "results": [REAL_LISTING]}
    assert checked(ListingPage, page, "GET /ws/listings") is page
    check_response("GET", "/ws/listings", 200, page)  # the contract knows max_price's type

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["page-size"] == "50"
        return httpx.Response(200, json=page)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = BackMarketClient(Transport("https://www.backmarket.fr", SecretStr("t"), "fr-fr", UA,
                                        store="fr", http=http))
    assert list(client.iter_listings()) == [REAL_LISTING]


def test_reconciliation_reads_a_numeric_max_price_a_null_min_price_and_a_negative_quantity(
        ) -> None:
    published = offer().published()
    live = observed(REAL_LISTING, "fr-fr", published)
    assert dict(zip(("quantity", "price", "min_price", "max_price"), (live[3], *live[4:5],
                                                                      *live[8:10]), strict=True)
                ) == {"quantity": -1, "price": "199.00", "min_price": None, "max_price": "199.00"}
    snapshot = {"ip13-128-mid-c": SnapshotEntry("IP13-128-MID-C", str(REAL_LISTING["id"]),
                                                published, "live")}
    result = reconcile("fr", "fr-fr", [REAL_LISTING], snapshot,
                       {"ip13-128-mid-c": offer()})
    # Only the quantity Back Market shows differs: the number 199 is the 199.00 published.
    assert [(d.kind, d.field, d.snapshot, d.live) for d in result.drifts] == [
        ("changed", "quantity", 5, -1)]


@pytest.mark.parametrize("max_price, target", [(199, "199"), (199.9, "199.90"),
                                               ("199.90", "199.9")])
def test_a_listing_with_a_numeric_max_price_matches_what_was_sent(max_price: object,
                                                                  target: str) -> None:
    store = StoreSettings(name="fr", locale="fr-fr")
    sent = offer(quantity=-1, price=Decimal("199"), max_price=Decimal(target)).published()
    shown = {**REAL_LISTING, "max_price": max_price}
    assert listing_matches(shown, sent, store)
    assert not listing_matches({**shown, "max_price": 250}, sent, store)
    assert not listing_matches({**shown, "min_price": "150.00"}, sent, store)


def test_the_emulator_answers_listings_in_the_real_shape_and_the_engine_reads_them_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    with checked_emulator(task_delay=0.01, sku_lines_per_hour=0) as server:
        shop = Shop(tmp_path, server, f"sqlite:///{tmp_path / 'state.db'}")
        write_catalog(tmp_path / "catalog.csv", [
            catalog_row("RS-1", grade="FAIR", price_fr="199", price_de="209") + ";199",
            catalog_row("RS-2", ean="5901234123457", grade="GOOD", stock="2",
                        price_fr="99.90", price_de="99") + ";120.5",
        ], HEADER + ";max_price_fr")
        shop.run("apply")
        listing = shop.live("RS-1", "fr-fr")
        assert listing is not None
        assert (listing["max_price"], listing["min_price"], listing["state"],
                listing["grade"], listing["snowden"]) == (199, None, 3, "FAIR", False)
        assert isinstance(listing["backmarket_id"], int)
        assert isinstance(listing["listing_id"], int)
        other = shop.live("RS-2", "fr-fr")
        assert other is not None and other["max_price"] == 120.5
        assert shop.live("RS-2", "de-de")["max_price"] == 0  # type: ignore[index]
        # Read back, the numbers are what was published: no drift, nothing to send again.
        result = shop.run("reconcile", "--format", "json")
        assert all(not report["drifts"] for report in json.loads(result.stdout))
        assert shop.plan_json()["changes"] == []


# --- batch CSV: no empty cell, state is not a grade -----------------------------------------


def batch_catalogs(server: EmulatorServer) -> list[list[dict[str, str]]]:
    """Every batch CSV the emulator received, as rows of cells by column."""
    return [list(csv.DictReader(io.StringIO(e.request["catalog"]), delimiter=";"))
            for e in server.emulator.exchanges if e.method == "POST" and e.path == "/ws/listings"]


def test_no_batch_row_carries_an_empty_cell_rows_are_grouped_by_the_columns_they_fill(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    with checked_emulator(task_delay=0.01, sku_lines_per_hour=0) as server:
        shop = Shop(tmp_path, server, f"sqlite:///{tmp_path / 'state.db'}",
                    stores=(("fr", "fr-fr"),))  # type: ignore[arg-type]
        shop.catalog([catalog_row("E-1", comment_fr="Boxed"), catalog_row("E-2"),
                      catalog_row("E-3", comment_fr="As new"),
                      catalog_row("E-4", product_id="9b1e7c2a-4d3f-4e5a-8b6c-7d8e9f0a1b2c",
                                  ean="")])
        shop.run("apply")
        files = batch_catalogs(server)
        assert all(value != "" for rows in files for row in rows for value in row.values())
        assert sorted(sorted(row["sku"] for row in rows) for rows in files) == [
            ["E-1", "E-3"], ["E-2"], ["E-4"]]
        by_sku = {row["sku"]: row for rows in files for row in rows}
        assert "comment" not in by_sku["E-2"] and "ean" not in by_sku["E-4"]
        assert "product_id" not in by_sku["E-1"]
        for sku, comment in (("E-1", "Boxed"), ("E-2", None), ("E-3", "As new"), ("E-4", None)):
            listing = shop.live(sku, "fr-fr")
            assert listing is not None and listing["comment"] == comment, sku
            assert listing["quantity"] == 5 and listing["price"] == "199.90"
        assert shop.plan_json()["changes"] == []


def test_batch_files_group_changes_in_order_and_leave_empty_fields_out() -> None:
    def change(sku: str, **fields: object) -> Change:
        target = offer(sku=sku, **fields).published()
        return Change("create", "fr", sku, target, None, row=2)

    changes = [change("A", comment=None, max_price=None), change("B"),
               change("C", comment=None, max_price=None), change("D", comment="x" * 3)]
    files = batch_files(changes, send_deee=False)
    assert [[c.sku for c in f.changes] for f in files] == [["A", "C"], ["B", "D"]]
    assert files[0].columns == ["sku", "ean", "grade", "quantity", "price", "currency",
                                "warranty_delay"]
    assert files[1].columns == [*files[0].columns, "comment", "max_price"]
    assert [row["comment"] for row in files[1].rows] == ["Boxed", "xxx"]
    assert all("" not in row.values() for f in files for row in f.rows)


def test_a_batch_row_state_is_a_draft_not_a_grade_and_no_grade_means_good() -> None:
    clock = FakeClock()
    with checked_emulator(task_delay=1.0, clock=clock.monotonic) as server:
        client = httpx.Client(base_url=server.base_url, headers={
            "Authorization": f"Basic {TOKEN}", "User-Agent": UA, "Accept-Language": "fr-fr"})

        def batch(catalog: str) -> None:
            answer = client.post("/ws/listings", json={
                "catalog": catalog, "quotechar": '"', "delimiter": ";", "encoding": "utf-8"})
            assert answer.status_code == 200, answer.text
            clock.advance(1.0)
            server.emulator.run_due_tasks()

        batch("sku;ean;state;quantity;price\nD-1;4006381333931;3;5;100\n"
              "D-2;5901234123457;0;4;90\n")
        held = {item["sku"]: item for item in server.emulator.listings(TOKEN)}
        assert (held["D-1"]["grade"], held["D-1"]["draft"], held["D-1"]["quantity"]) == (
            "GOOD", True, 5)
        assert held["D-1"]["markets"]["fr-fr"]["publication_state"] == 3  # a draft: offline
        # state 0 was once read as EXCELLENT: it is not a grade.
        assert (held["D-2"]["grade"], held["D-2"]["draft"]) == ("GOOD", False)
        assert held["D-2"]["markets"]["fr-fr"]["publication_state"] == 2
        batch("sku;state\nD-1;2\n")  # another state ends the draft; the grade stays
        (d1,) = [item for item in server.emulator.listings(TOKEN) if item["sku"] == "D-1"]
        assert (d1["grade"], d1["draft"], d1["markets"]["fr-fr"]["publication_state"]) == (
            "GOOD", False, 2)
        client.close()


# --- the BackPricer band ---------------------------------------------------------------------


def test_the_emulator_refuses_a_price_outside_the_backpricer_band_single_and_batch() -> None:
    clock = FakeClock()
    with checked_emulator(task_delay=1.0, clock=clock.monotonic) as server:
        client = httpx.Client(base_url=server.base_url, headers={
            "Authorization": f"Basic {TOKEN}", "User-Agent": UA, "Accept-Language": "fr-fr"})

        def batch(catalog: str) -> list[dict[str, object]]:
            answer = client.post("/ws/listings", json={
                "catalog": catalog, "quotechar": '"', "delimiter": ";", "encoding": "utf-8"})
            assert answer.status_code == 200, answer.text
            clock.advance(1.0)
            server.emulator.run_due_tasks()
            return server.emulator.listings(TOKEN)

        def held(sku: str) -> dict[str, object] | None:
            listing = server.emulator.listing(TOKEN, sku, "fr-fr")
            return None if listing is None else {k: listing[k] for k in ("price", "min_price")}

        # 100 x 1.08 = 108: the band's top is in, a cent above is out, below min_price too.
        batch("sku;ean;grade;quantity;price;min_price\n"
              "B-1;4006381333931;GOOD;1;108;100\nB-2;4006381333931;FAIR;1;108.01;100\n"
              "B-3;5901234123457;GOOD;1;99.99;100\n")
        assert held("B-1") == {"price": "108.00", "min_price": "100.00"}
        assert held("B-2") is None and held("B-3") is None
        tasks = server.emulator.tasks(TOKEN)
        assert "INVALID_BACKPRICER_RANGE" in json.dumps(tasks[-1]["result"])

        listing = server.emulator.listing(TOKEN, "B-1", "fr-fr")
        assert listing is not None
        url = f"/ws/listings/{listing['id']}"
        for body in ({"price": "108.01", "currency": "EUR"}, {"min_price": "99.99"},
                     {"price": "90", "currency": "EUR"}):
            answer = client.post(url, json=body)
            assert answer.status_code == 400, body
            assert answer.json().startswith("INVALID_BACKPRICER_RANGE"), answer.text
        assert held("B-1") == {"price": "108.00", "min_price": "100.00"}  # nothing changed
        for body in ({"price": "100", "currency": "EUR"}, {"min_price": "92.60"},
                     {"min_price": None, "price": "150", "currency": "EUR"}):
            assert client.post(url, json=body).status_code == 200, body
        assert held("B-1") == {"price": "150.00", "min_price": None}
        # Once in band again, an update of the existing listing through the batch is checked
        # against the min_price it holds.
        assert client.post(url, json={"min_price": "140"}).status_code == 200
        batch("sku;price\nB-1;151.20\n")
        assert held("B-1") == {"price": "151.20", "min_price": "140.00"}
        batch("sku;price\nB-1;151.21\n")
        assert held("B-1") == {"price": "151.20", "min_price": "140.00"}
        client.close()


def test_an_offer_outside_the_band_is_rejected_before_sending_and_the_rest_goes_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    with checked_emulator(task_delay=0.01, sku_lines_per_hour=0) as server:
        shop = Shop(tmp_path, server, f"sqlite:///{tmp_path / 'state.db'}",
                    stores=(("fr", "fr-fr"),))  # type: ignore[arg-type]
        write_catalog(tmp_path / "catalog.csv", [
            catalog_row("IN-1", price_fr="108") + ";100",
            catalog_row("OUT-1", price_fr="108.01") + ";100",
        ], HEADER + ";min_price_fr")
        (rejection,) = shop.plan_json()["rejections"]
        assert (rejection["row"], rejection["sku"], rejection["column"], rejection["value"]) \
            == (3, "OUT-1", "min_price_fr", "100")
        assert "INVALID_BACKPRICER_RANGE" in rejection["expected"]
        shop.run("apply")
        assert shop.live("IN-1", "fr-fr") is not None
        assert shop.live("OUT-1", "fr-fr") is None
        sent = {row["sku"] for rows in batch_catalogs(server) for row in rows}
        assert sent == {"IN-1"}


def test_with_the_band_check_off_back_markets_refusal_reaches_the_seller(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    with checked_emulator(task_delay=0.01, sku_lines_per_hour=0) as server:
        shop = Shop(tmp_path, server, f"sqlite:///{tmp_path / 'state.db'}",
                    stores=(("fr", "fr-fr"),))  # type: ignore[arg-type]
        with shop.config.open("a", encoding="utf-8") as config:  # the last [[stores]] table
            config.write("backpricer_band = false\n")
        write_catalog(tmp_path / "catalog.csv", [
            catalog_row("OUT-1", price_fr="108.01") + ";100"], HEADER + ";min_price_fr")
        assert shop.plan_json()["rejections"] == []
        shop.run("apply", code=None)
        assert shop.live("OUT-1", "fr-fr") is None
        assert "INVALID_BACKPRICER_RANGE" in shop.run("errors").output
