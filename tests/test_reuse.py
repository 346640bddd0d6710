"""Issue 13, part 2: Back Market reuses and resolves listings. A new SKU for a product and
grade the seller already has a listing of may land on that listing, which keeps its old SKU;
a product id may be resolved to another of its model family. What Back Market reports it did
is confirmed, adopted into the snapshot and told in plain words; no create is sent twice; and
nothing Back Market did not do is ever confirmed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncer.backmarket.client import BackMarketClient
from syncer.backmarket.transport import Transport
from syncer.config.settings import load_settings
from syncer.emulator.server import EmulatorServer
from syncer.pipeline.planner import catalog_source, make_plan
from syncer.publish.publisher import Publisher
from syncer.state.store import StateStore
from tests.conftest import TOKEN, catalog_row
from tests.helpers import Shop, checked_emulator

PRODUCT = "5b1f5e0e-34a4-4a63-9a6a-2b1c0c6a0a11"
FAMILY_FIRST = "0c0ffee0-0000-4000-8000-000000000001"
FAMILY_OTHER = "0c0ffee0-0000-4000-8000-000000000002"


@pytest.fixture(params=["row", "sku"])
def emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0, realistic=True,
                          result_key=request.param) as server:
        yield server


@pytest.fixture
def shop(tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Shop:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    return Shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state.db'}",
                extra="[limits]\nmax_zero_share = 1.0\n")


def rows_sent(shop: Shop, sku: str) -> int:
    return sum(1 for row in shop.server.emulator.batch_rows if row.sku == sku)


def test_a_listing_back_market_reused_is_adopted_and_not_created_again(shop: Shop) -> None:
    shop.catalog([catalog_row("OLD-1", ean="", product_id=PRODUCT, grade="GOOD")])
    shop.run("apply")
    old = shop.live("OLD-1", "fr-fr")
    assert old is not None
    # The seller renames the SKU: the old one is zeroed, the new one created... on the old
    # listing, which keeps its SKU.
    shop.catalog([catalog_row("NEW-1", ean="", product_id=PRODUCT, grade="GOOD", stock="4",
                              price_fr="189.00")])
    result = shop.run("apply")
    note = f"Back Market reused listing {old['listing_id']} (SKU OLD-1) for NEW-1"
    assert result.stdout.count(f"NOTE {note}") == 2  # fr and de each sent its create
    listings = shop.server.emulator.listings(TOKEN)
    assert [(item["sku"], item["quantity"]) for item in listings] == [("OLD-1", 4)]
    assert listings[0]["markets"]["fr-fr"]["price"] == "189.00"
    assert shop.live("NEW-1", "fr-fr") is None
    with StateStore.open_readonly(shop.state_url) as state:
        for store in ("fr", "de"):
            snapshot = state.offers.snapshot(store)
            assert list(snapshot) == ["new-1"]  # the old SKU's entry is retired
            assert snapshot["new-1"].listing_id == old["id"]
    runs = json.loads(shop.run("status", "--format", "json").stdout)
    assert all(s["last_runs"][0]["counts"]["reused"] == 1 for s in runs)

    # Nothing is sent again: not the create, not a zero of the old SKU.
    for _ in range(2):
        assert shop.plan_json()["changes"] == []
        shop.run("apply")
    shop.run("reconcile")
    assert shop.plan_json()["changes"] == []
    shop.run("apply")
    assert rows_sent(shop, "NEW-1") == 2
    assert shop.server.emulator.listings(TOKEN)[0]["quantity"] == 4
    # A later change of the new SKU goes to the listing it was adopted on.
    shop.catalog([catalog_row("NEW-1", ean="", product_id=PRODUCT, grade="GOOD", stock="1",
                              price_fr="189.00")])
    shop.run("apply")
    assert shop.live("OLD-1", "de-de")["quantity"] == 1  # type: ignore[index]
    assert rows_sent(shop, "NEW-1") == 2


def test_a_product_back_market_resolved_within_its_family_is_confirmed_once(
        shop: Shop) -> None:
    emulator = shop.server.emulator
    emulator.add_product(product_id=FAMILY_FIRST, title="iPhone 13 - 128 GB", family="13")
    emulator.add_product(product_id=FAMILY_OTHER, title="iPhone 13 128GB", family="13")
    shop.catalog([catalog_row("X-1", ean="", product_id=FAMILY_OTHER)])
    result = json.loads(shop.run("apply", "--format", "json").stdout)
    note = f"Back Market resolved product {FAMILY_OTHER} to {FAMILY_FIRST} for X-1"
    assert [r["notices"] for r in result] == [[note], [note]]
    assert shop.live("X-1", "fr-fr")["product_id"] == FAMILY_FIRST  # type: ignore[index]
    assert shop.plan_json()["changes"] == []
    shop.run("apply")
    # Reconciliation sees the resolved product on the listing: not a product the row would
    # change (a rejection that holds the offer back), not a change to send back.
    shop.run("reconcile")
    plan = shop.plan_json()
    assert plan["changes"] == [] and plan["rejections"] == []
    shop.run("apply")
    assert rows_sent(shop, "X-1") == 2  # once per store, never again
    shop.catalog([catalog_row("X-1", ean="", product_id=FAMILY_OTHER, stock="2")])
    shop.run("apply")
    assert shop.live("X-1", "fr-fr")["quantity"] == 2  # type: ignore[index]


class ShiftedRows(httpx.BaseTransport):
    """A proxy that answers task results keyed by row one further than Back Market meant
    (a header counted), without the SKUs and listing UUIDs: every row tie is wrong."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method != "GET" or not request.url.path.startswith("/ws/tasks/"):
            return response
        task: dict[str, Any] = json.loads(response.read())
        result = task.get("result") or {}
        for name in ("product_success", "product_errors"):
            result[name] = {str(int(key) + 1): {k: v for k, v in entry.items()
                                                if k not in ("sku", "id")}
                            for key, entry in (result.get(name) or {}).items()}
        return httpx.Response(200, json=task)

    def close(self) -> None:
        self.inner.close()


def test_a_success_tied_to_the_wrong_row_confirms_nothing_it_did_not_do(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0, result_key="row") as server:
        shop = Shop(tmp_path, server, f"sqlite:///{tmp_path / 'state.db'}",
                    stores=(("fr", "fr-fr"),))
        # Lines alike but for their SKU: a neighbour's listing carries what this line sent.
        skus = [f"R-{n}" for n in range(4)]
        shop.catalog([catalog_row(sku, ean="", product_id=PRODUCT) for sku in skus])
        settings = load_settings(shop.config)
        fr = settings.store("fr")
        with httpx.Client(transport=ShiftedRows()) as http, \
                StateStore.open(settings.state_database_url()) as state:
            client = BackMarketClient(Transport(fr.base_url(), settings.token(fr), fr.locale,
                                                settings.api.user_agent(), store="fr", http=http))
            plan = make_plan(settings, [fr], catalog_source(settings), state)
            result = Publisher(fr, client, state, poll_seconds=0.01).apply(plan.stores[0])
            snapshot = state.offers.snapshot("fr")
        assert result.counts["created"] == 4 and result.failures == []
        assert result.notices == []
        for sku in skus:
            live = shop.live(sku, "fr-fr")
            assert live is not None
            assert snapshot[sku.casefold()].listing_id == live["id"], sku
        assert shop.plan_json()["changes"] == []


class Opaque(httpx.BaseTransport):
    """A proxy answering task results under opaque keys, without SKUs or listing UUIDs:
    an entry can be tied to no line, only its listing id says what Back Market did."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method != "GET" or not request.url.path.startswith("/ws/tasks/"):
            return response
        task: dict[str, Any] = json.loads(response.read())
        result = task.get("result") or {}
        for name in ("product_success", "product_errors"):
            result[name] = {f"k{n}": {k: v for k, v in entry.items() if k not in ("sku", "id")}
                            for n, entry in enumerate((result.get(name) or {}).values())}
        return httpx.Response(200, json=task)

    def close(self) -> None:
        self.inner.close()


def publish_through(shop: Shop, transport: httpx.BaseTransport) -> tuple[Any, dict[str, Any]]:
    settings = load_settings(shop.config)
    fr = settings.store("fr")
    with httpx.Client(transport=transport) as http, \
            StateStore.open(settings.state_database_url()) as state:
        client = BackMarketClient(Transport(fr.base_url(), settings.token(fr), fr.locale,
                                            settings.api.user_agent(), store="fr", http=http))
        plan = make_plan(settings, [fr], catalog_source(settings), state)
        result = Publisher(fr, client, state, poll_seconds=0.01).apply(plan.stores[0])
        return result, state.offers.snapshot("fr")


@pytest.fixture
def opaque_shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    """OLD-1 live; Back Market reuses listings; task results reach us opaque."""
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0, realistic=True) as server:
        shop = Shop(tmp_path, server, f"sqlite:///{tmp_path / 'state.db'}",
                    stores=(("fr", "fr-fr"),), extra="[limits]\nmax_zero_share = 1.0\n")
        shop.catalog([catalog_row("OLD-1", ean="", product_id=PRODUCT, grade="GOOD")])
        shop.run("apply")
        yield shop


def test_a_listing_the_task_ties_to_no_line_is_found_by_product_and_grade(
        opaque_shop: Shop) -> None:
    old = opaque_shop.live("OLD-1", "fr-fr")
    assert old is not None
    opaque_shop.catalog([catalog_row("NEW-1", ean="", product_id=PRODUCT, grade="GOOD",
                                     stock="3")])
    result, snapshot = publish_through(opaque_shop, Opaque())
    assert result.notices == [
        f"Back Market reused listing {old['listing_id']} (SKU OLD-1) for NEW-1"]
    assert snapshot["new-1"].listing_id == old["id"] and "old-1" not in snapshot
    assert opaque_shop.plan_json()["changes"] == []


def test_one_listing_the_task_ties_to_no_line_is_not_taken_for_two_lines_alike(
        opaque_shop: Shop) -> None:
    opaque_shop.catalog([catalog_row(sku, ean="", product_id=PRODUCT, grade="GOOD", stock="3")
                         for sku in ("NEW-1", "NEW-2")])
    result, snapshot = publish_through(opaque_shop, Opaque())
    # Both rows landed on OLD-1's listing: which SKU it serves nobody can tell.
    assert sorted(f.sku for f in result.failures) == ["NEW-1", "NEW-2"]
    assert all("not found as sent" in f.message for f in result.failures)
    assert all(snapshot[key].published is None for key in ("new-1", "new-2"))
