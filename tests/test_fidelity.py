"""Back Market as production integrations see it (reference/BACKMARKET.md, "Observed in
production integrations"), where it differs from the spec or the spec is silent: the client
reads real-shaped answers, and the emulator answers and refuses as the real API does."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from syncer.answers import ListingPage, checked
from syncer.client import BackMarketClient
from syncer.config import StoreSettings
from syncer.offers import Offer
from syncer.publish import listing_matches
from syncer.reconcile import observed, reconcile
from syncer.state import SnapshotEntry
from tests.conftest import HEADER, TOKEN, catalog_row, write_catalog
from tests.contract import check_response
from tests.helpers import Shop, checked_emulator

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

    client = BackMarketClient("https://www.backmarket.fr", SecretStr("t"), "fr-fr", UA,
                              store="fr", http=httpx.Client(transport=httpx.MockTransport(handler)))
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
