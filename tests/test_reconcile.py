"""Reconciliation with what is live: drift found and restored, listings adopted, unknown
listings left alone."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from syncer.core.offers import Offer
from syncer.core.snapshot import SnapshotEntry
from syncer.emulator.server import EmulatorServer
from syncer.publish.reconcile import observed, reconcile
from tests.conftest import TOKEN, catalog_row
from tests.helpers import Shop, assert_emulator_matches_catalog

UA = "BM-Tests-backoffice;tests@example.com"


@pytest.fixture
def shop(tmp_path: Path, emulator: EmulatorServer, state_url: str,
         monkeypatch: pytest.MonkeyPatch) -> Shop:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    return Shop(tmp_path, emulator, state_url)


def back_office(server: EmulatorServer, method: str, path: str, body: object,
                locale: str = "fr-fr") -> dict:  # type: ignore[type-arg]
    """The seller clicking in Back Market's back office (or another tool): straight to the
    API, behind the syncer's back."""
    response = httpx.request(method, server.base_url + path, json=body, headers={
        "Authorization": f"Basic {TOKEN}", "User-Agent": UA, "Accept-Language": locale})
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def test_reconciliation_finds_exactly_the_drifted_listings_and_the_next_run_restores_them(
        shop: Shop, emulator: EmulatorServer) -> None:
    catalog = shop.catalog([catalog_row(f"C-{i}", stock="5") for i in range(6)])
    shop.run("apply")
    emulator.emulator.sell(TOKEN, "C-1", 2)  # orders lowered the stock
    emulator.emulator.sell(TOKEN, "C-4", 5)
    listing = emulator.emulator.listing(TOKEN, "C-2", "de-de")
    assert listing is not None
    back_office(emulator, "POST", f"/ws/listings/{listing['id']}",
                {"price": "111.00", "currency": "EUR"}, locale="de-de")

    result = shop.run("reconcile", "--format", "json", code=2)
    reports = {r["store"]: r for r in json.loads(result.stdout)}
    fr = {(d["sku"], d["field"], d["snapshot"], d["live"]) for d in reports["fr"]["drifts"]}
    assert fr == {("C-1", "quantity", 5, 3), ("C-4", "quantity", 5, 0)}
    de = {(d["sku"], d["field"], d["snapshot"], d["live"]) for d in reports["de"]["drifts"]}
    assert de == {("C-2", "price", "209.90", "111.00")}  # stock already seen through fr
    text = shop.run("reconcile", code=0).stdout  # the snapshot now says what is live
    assert "0 drifted" in text

    plan = shop.plan_json()
    assert sorted((c["store"], c["sku"], tuple(c["fields"])) for c in plan["changes"]) == [
        ("de", "C-1", ("quantity",)), ("de", "C-2", ("price",)), ("de", "C-4", ("quantity",)),
        ("fr", "C-1", ("quantity",)), ("fr", "C-4", ("quantity",))]
    shop.run("apply")
    assert_emulator_matches_catalog(shop, catalog)
    assert shop.plan_json()["changes"] == []


def test_a_listing_whose_row_is_rejected_or_unpriced_here_is_not_called_not_in_the_catalog(
        shop: Shop, emulator: EmulatorServer) -> None:
    shop.catalog([catalog_row("MINE-1")])
    csv = ('"sku";"ean";"grade";"quantity";"price";"warranty_delay";"comment"\n'
           '"BAD-1";"4006381333931";"GOOD";"2";"50.00";"12";""\n'
           '"NOFR-1";"4006381333931";"GOOD";"2";"50.00";"12";""\n'
           '"FOREIGN-1";"4006381333931";"GOOD";"2";"50.00";"12";""\n')
    back_office(emulator, "POST", "/ws/listings",
                {"catalog": csv, "quotechar": '"', "delimiter": ";", "encoding": "utf-8"})
    emulator.emulator.run_due_tasks()
    shop.catalog([catalog_row("MINE-1"), catalog_row("BAD-1", grade="SHINYISH"),
                  catalog_row("NOFR-1", price_fr="")])
    result = shop.run("reconcile", "--store", "fr")  # unknown listings are not drift
    assert "BAD-1: live listing" in result.stdout
    assert "is in the catalog but not offered in this store (row 3 rejected: grade)" \
        in result.stdout
    assert "NOFR-1: live listing" in result.stdout and \
        "(row 4 has no price for this store); left alone" in result.stdout
    assert "FOREIGN-1: live listing" in result.stdout
    lines = {line.split()[1].rstrip(":"): line for line in result.stdout.splitlines()
             if line.startswith("  UNKNOWN")}
    assert "is not in the catalog" in lines["FOREIGN-1"]
    assert "is not in the catalog" not in lines["BAD-1"] + lines["NOFR-1"]


def test_listings_made_elsewhere_are_adopted_by_sku_or_left_alone(
        shop: Shop, emulator: EmulatorServer) -> None:
    catalog = shop.catalog([catalog_row("MINE-1"), catalog_row("HAND-1", price_fr="120.00"),
                            catalog_row("HAND-2")])
    # Before the syncer, the seller listed HAND-1 and HAND-2 by hand, and FOREIGN-1.
    csv = ('"sku";"ean";"grade";"quantity";"price";"warranty_delay";"comment"\n'
           '"hand-1";"4006381333931";"EXCELLENT";"5";"130.00";"12";""\n'
           '"HAND-2";"4006381333931";"EXCELLENT";"5";"199.90";"12";""\n'
           '"FOREIGN-1";"4006381333931";"GOOD";"2";"50.00";"12";""\n')
    back_office(emulator, "POST", "/ws/listings",
                {"catalog": csv, "quotechar": '"', "delimiter": ";", "encoding": "utf-8"})
    emulator.emulator.run_due_tasks()

    result = shop.run("reconcile", "--store", "fr", "--format", "json", code=2)
    (report,) = json.loads(result.stdout)
    kinds = sorted((d["kind"], d["sku"]) for d in report["drifts"])
    assert kinds == [("adopted", "HAND-2"), ("adopted", "hand-1"), ("unknown", "FOREIGN-1")]

    plan = shop.plan_json("--store", "fr")
    by_sku = {c["sku"]: c for c in plan["changes"]}
    assert by_sku["MINE-1"]["action"] == "create"
    assert by_sku["HAND-1"]["action"] == "update"  # adopted, never created again
    assert by_sku["HAND-1"]["fields"] == {"price": {"old": "130.00", "new": "120.00"}}
    assert "HAND-2" not in by_sku  # adopted as it is: nothing to change
    assert "FOREIGN-1" not in by_sku  # not ours to zero
    shop.run("apply", "--store", "fr")
    listings = {item["sku"] for item in emulator.emulator.listings(TOKEN)}
    assert listings == {"hand-1", "HAND-2", "FOREIGN-1", "MINE-1"}  # nothing duplicated
    foreign = emulator.emulator.listing(TOKEN, "FOREIGN-1", "fr-fr")
    assert foreign is not None and foreign["quantity"] == 2
    del catalog


def offer(sku: str, quantity: int = 5, price: str = "10.00") -> Offer:
    return Offer(store="fr", row=2, sku=sku, product_id=None, ean="4006381333931",
                 grade="GOOD", quantity=quantity, price=Decimal(price), currency="EUR",
                 warranty_delay=12)


def listing_of(o: Offer, **changes: object) -> dict:  # type: ignore[type-arg]
    base = {"id": f"id-{o.sku}", "sku": o.sku, "grade": o.grade, "quantity": o.quantity,
            "price": f"{o.price:.2f}", "currency": "EUR", "warranty_delay": 12,
            "comment": None, "min_price": None, "max_price": "0.00", "shippings": [],
            "publication_state": 2, "product_id": "p-1"}
    return {**base, **changes}


def test_missing_listing_is_forgotten_so_the_next_run_creates_it() -> None:
    a, b = offer("A"), offer("B")
    snapshot = {"a": SnapshotEntry("A", "id-A", a.published(), "live"),
                "b": SnapshotEntry("B", "id-B", b.published(), "live")}
    result = reconcile("fr", "fr-fr", [listing_of(a)], snapshot, {"a": a, "b": b})
    assert result.missing == ["B"]
    assert [d.kind for d in result.drifts] == ["missing"]


def test_a_listing_without_this_countrys_price_is_missing_here() -> None:
    a = offer("A")
    snapshot = {"a": SnapshotEntry("A", "id-A", a.published(), "live")}
    result = reconcile("fr", "fr-fr", [listing_of(a, price="0.00", publication_state=0)],
                       snapshot, {"a": a})
    assert result.missing == ["A"]


def test_observed_keeps_what_a_listing_does_not_show() -> None:
    a = offer("A")
    live = observed(listing_of(a, quantity=2), "fr-fr", a.published())
    assert live[1] == "4006381333931"  # the EAN is not shown: kept
    assert live[0] is None  # linked by EAN: the listing's product id is not a change
    assert live[3] == 2
