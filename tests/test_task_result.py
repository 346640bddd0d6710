"""Issue 13, part 1: a finished batch task answers ``result.product_success`` and
``result.product_errors``, two objects whose keys mean something nobody outside Back Market
knows (SKU, row, EAN). Each entry is tied to the line it answers by what it carries; Back
Market's own text of a refusal reaches `syncer errors`; what the result leaves open, and
only that, is read from the listings; a refused product proposal is recorded once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncer.backmarket.taskresult import SentLine, task_outcomes
from syncer.emulator.config import Faults
from syncer.emulator.server import EmulatorServer
from syncer.errors import ApiError
from syncer.state.store import StateStore
from tests.conftest import TOKEN, catalog_row, write_catalog, write_config
from tests.helpers import FakeClock, Shop, checked_emulator
from tests.test_client import client
from tests.test_products import PRODUCT_HEADER, ean, proposals_sent, row, run

LINES = [SentLine("A-1", 1, "4006381333931"), SentLine("B-2", 2, "3760000000012"),
         SentLine("C-3", 3, None, listing_id="9f1c")]


def done(success: Any = None, errors: Any = None) -> dict[str, Any]:
    return {"task_id": 1, "action_status": 9, "last_action_error": None, "statuscode": 200,
            "result": {"product_success": success or {}, "product_errors": errors or {}}}


# --- tying entries to lines (pure) ----------------------------------------------------------

def test_entries_keyed_by_sku_are_tied_by_the_sku_they_carry() -> None:
    report = task_outcomes(done(
        {"A-1": {"sku": "A-1", "listing_id": 7, "backmarket_id": 5, "publication_state": 2}},
        {"B-2": {"sku": "b-2", "code": "invalid_field", "message": "grade: not allowed"}}),
        LINES)
    a, b = report.outcomes["a-1"], report.outcomes["b-2"]
    assert (a.ok, a.listing_id, a.weak) == (True, "7", False)
    assert (b.ok, b.message, b.code) == (False, "grade: not allowed", "invalid_field")
    assert "c-3" not in report.outcomes and report.untied == []


def test_entries_under_keys_that_are_not_skus_are_tied_by_their_fields() -> None:
    # Keyed by EAN, by an opaque id, or by the listing id the line updates.
    report = task_outcomes(done(
        {"4006381333931": {"listing_id": 7, "backmarket_id": 5, "publication_state": 3},
         "x-81": {"sku": "B-2", "listing_id": 8, "backmarket_id": 5, "publication_state": 2},
         "0": {"id": "9f1c", "listing_id": 9, "backmarket_id": 6, "publication_state": 2}}),
        LINES)
    assert {key: (o.ok, o.listing_id, o.weak) for key, o in report.outcomes.items()} == {
        "a-1": (True, "7", False), "b-2": (True, "8", False), "c-3": (True, "9f1c", False)}


def test_entries_keyed_by_row_are_tied_by_row_counted_as_the_entries_that_say_both_show(
        ) -> None:
    # Rows counted from the header (the first data row is "2"): the entry that carries its
    # SKU shows it, and the bare error of row "4" is C-3's, not a neighbour's.
    report = task_outcomes(done(
        {"2": {"sku": "A-1", "listing_id": 7, "backmarket_id": 5, "publication_state": 2}},
        {"4": "Price is below the BackPricer range", "3": ["grade missing", "bad ean"]}),
        LINES)
    assert report.outcomes["c-3"].message == "Price is below the BackPricer range"
    assert report.outcomes["b-2"].message == "grade missing; bad ean"
    # Without such an entry, row "1" is the first data row.
    report = task_outcomes(done(errors={"1": {"message": "refused", "code": "E1"}}), LINES)
    assert report.outcomes["a-1"].message == "refused"


def test_a_success_tied_by_its_row_alone_or_showing_another_sku_is_checked_first() -> None:
    report = task_outcomes(done(
        {"1": {"listing_id": 7, "backmarket_id": 5, "publication_state": 2},
         "B-2": {"sku": "OLD-9", "listing_id": 3, "backmarket_id": 5, "publication_state": 2}}),
        LINES)
    assert report.outcomes["a-1"].weak and report.outcomes["a-1"].listing_id == "7"
    assert report.outcomes["b-2"].weak and report.outcomes["b-2"].shown_sku == "OLD-9"


def test_an_entry_naming_two_lines_or_none_ties_nothing() -> None:
    report = task_outcomes(done(
        {"A-1": {"sku": "B-2", "listing_id": 7, "backmarket_id": 5, "publication_state": 2},
         "Z-9": {"sku": "Z-9", "listing_id": 8, "backmarket_id": 5, "publication_state": 2}},
        {"Q": {"sku": "Q", "message": "unknown product"}}), LINES)
    assert report.outcomes == {}
    assert sorted(o.listing_id or "" for o in report.untied) == ["", "7", "8"]
    assert report.untied_errors() == ["unknown product"]


def test_an_error_is_a_refusal_even_when_a_success_names_the_line_too() -> None:
    report = task_outcomes(done(
        {"A-1": {"sku": "A-1", "listing_id": 7, "backmarket_id": 5, "publication_state": 2}},
        {"1": {"sku": "A-1", "message": "shipping price refused"}}), LINES)
    assert not report.outcomes["a-1"].ok
    assert report.outcomes["a-1"].message == "shipping price refused"


def test_two_successes_with_different_listings_for_one_line_leave_it_open() -> None:
    report = task_outcomes(done(
        {"A-1": {"sku": "A-1", "listing_id": 7, "backmarket_id": 5, "publication_state": 2},
         "1": {"sku": "A-1", "listing_id": 8, "backmarket_id": 5, "publication_state": 2}}),
        LINES)
    assert "a-1" not in report.outcomes


@pytest.mark.parametrize("result", [
    {"product_success": "A-1"},
    {"product_success": {"A-1": "created"}},
    {"product_success": {"A-1": {"listing_id": [7]}}},
    {"product_errors": 3},
    {"product_success": {"A-1": {"publication_state": "online"}}},
])
def test_a_malformed_result_is_one_api_error_naming_the_field(result: dict[str, Any]) -> None:
    answer = {"task_id": 1, "action_status": 9, "last_action_error": None, "statuscode": 200,
              "result": result}
    c, _ = client(lambda request: httpx.Response(200, json=answer))
    with pytest.raises(ApiError) as caught:
        c.get_task(1)
    assert caught.value.message.startswith("GET /ws/tasks/{id}: unexpected answer from Back "
                                           "Market: field result.")


# --- end to end, over loopback ---------------------------------------------------------------

@pytest.fixture(params=["sku", "row"])
def emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0,
                          result_key=request.param) as server:
        yield server


@pytest.fixture
def shop(tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Shop:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    return Shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state.db'}")


def reads(shop: Shop, since: int) -> list[str]:
    """Listing reads sent after exchange ``since``: the one-by-one fallback."""
    return [e.path for e in shop.server.emulator.exchanges[since:]
            if e.method == "GET" and e.path.startswith("/ws/listings")]


def test_a_per_sku_batch_refusal_shows_back_markets_own_text_in_errors(shop: Shop) -> None:
    shop.server.emulator.faults.reject_skus["B-2"] = "grade FAIR not sold for this product"
    shop.catalog([catalog_row("A-1"), catalog_row("B-2"), catalog_row("C-3")])
    result = shop.run("apply", code=3)
    assert "FAILED B-2: grade FAIR not sold for this product" in result.stdout
    assert "not reported by batch task" not in result.stdout
    errors = json.loads(shop.run("errors", "--format", "json").stdout)["offers"]
    assert [(o["store"], o["sku"], o["last_error"], o["error_code"]) for o in errors] == [
        (store, "B-2", "grade FAIR not sold for this product", "listing_rejected")
        for store in ("de", "fr")]
    assert "B-2: grade FAIR not sold for this product" in shop.run("errors").stdout


def test_a_complete_result_confirms_a_batch_without_reading_listings(shop: Shop) -> None:
    shop.catalog([catalog_row(f"S-{n}") for n in range(10)])
    before = len(shop.server.emulator.exchanges)
    result = json.loads(shop.run("apply", "--format", "json").stdout)
    assert reads(shop, before) == []
    # Per store: the batch POST and the task, polled once or twice.
    assert [(r["store"], r["counts"]["created"]) for r in result] == [("fr", 10), ("de", 10)]
    assert all(r["counts"]["requests"] <= 3 for r in result), result
    assert shop.plan_json()["changes"] == []


def test_what_the_result_leaves_out_and_only_that_is_read_from_the_listings(
        shop: Shop) -> None:
    shop.server.emulator.faults.unreported_skus["S-3"] = "applied"
    shop.catalog([catalog_row(f"S-{n}") for n in range(6)])
    before = len(shop.server.emulator.exchanges)
    shop.run("apply", "--store", "fr")
    assert reads(shop, before) == ["/ws/listings/detail"]
    assert shop.plan_json("--store", "fr")["changes"] == []


# --- products -------------------------------------------------------------------------------

BAD = ean(3)


@pytest.mark.parametrize("result_key", ["sku", "row"])
def test_a_rejected_product_proposal_is_recorded_once_and_not_proposed_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, result_key: str) -> None:
    clocks = FakeClock()
    faults = Faults(reject_eans={BAD: "the images do not show the device"})
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0, auto_products=False,
                          review_delay=6 * 3600, clock=clocks.monotonic, faults=faults,
                          result_key=result_key) as server:
        config = write_config(tmp_path, state_url=f"sqlite:///{tmp_path / 'state.db'}",
                              environment=server.base_url, stores=(("fr", "fr-fr"),))
        config.write_text(config.read_text() + "publish_products = true\nreconcile = false\n"
                          "stock_lane = false\n")
        write_catalog(tmp_path / "catalog.csv", [row("NEW-1", ean(2)), row("BAD-1", BAD)],
                      PRODUCT_HEADER)
        from syncer.config.settings import load_settings

        settings = load_settings(config)
        run(settings, clocks)
        with StateStore.open_readonly(settings.state_database_url()) as state:
            proposals = state.products.proposals("fr")
        assert proposals[BAD]["status"] == "rejected"
        assert proposals[BAD]["reason"] == ("product proposal rejected by Back Market: the "
                                            "images do not show the device")
        assert proposals[ean(2)]["status"] == "proposed"  # pending validation
        assert proposals_sent(server, "BAD-1") == 1
        clocks.advance(hours=25)  # products due again
        run(settings, clocks)
        assert proposals_sent(server, "BAD-1") == 1
        assert sum(1 for r in server.emulator.batch_rows if r.sku == "BAD-1") == 1
