"""Units of pulled, unshipped order lines and the plan (issue 10, case 11).

Back Market lowers a listing's quantity when it sells; a catalog export that lags behind the
sales would have the next plan raise it again. With ``[orders] reserve_unshipped = true`` the
plan holds those units back until the lines ship or are cancelled (and says so); without it,
the plan says which SKUs it raises while units of theirs are sold and not shipped. Over
loopback: orders placed on the emulator, pulled, accepted and shipped by the real CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncer.config.settings import BUNDLED_MAPPINGS, load_settings
from syncer.config.stores import StoreSettings
from syncer.emulator.server import EmulatorServer
from syncer.errors import ConfigError
from syncer.orders.records import order_rows
from syncer.pipeline.planner import unshipped_by_store
from syncer.planning.mapping import compile_mapping, load_profile
from syncer.planning.reservations import reserved_note, unshipped_note, unshipped_units
from syncer.planning.validation import Validator
from syncer.state.store import StateStore
from tests.conftest import HEADER, catalog_row
from tests.helpers import Shop
from tests.test_orders import make_shop, place, write

SHIP_HEADER = "order_id;carrier;tracking_number;tracking_url;imei;serial_number"


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'state' / 'syncer.db'}"


def sell_two(shop: Shop) -> int:
    """A buyer takes 2 of the 5 A-1 published; the engine pulls and accepts the order and
    reconciles (the snapshot takes the 3 Back Market now shows)."""
    assert shop.live("A-1", "fr-fr")["quantity"] == 5  # type: ignore[index]
    order = place(shop, [("A-1", 2)])
    assert shop.live("A-1", "fr-fr")["quantity"] == 3  # type: ignore[index]
    shop.run("orders", "pull")
    assert "ACCEPTED" in shop.run("orders", "accept").stdout
    shop.run("reconcile", code=2)  # drift found: the quantity Back Market lowered
    return order


def ship(shop: Shop, order: int) -> None:
    shipments = write(shop, "shipments.csv", [SHIP_HEADER, f"{order};La Poste;6A0001;;;"])
    assert "Total: 1 shipped" in shop.run("orders", "ship", "--from", str(shipments)).stdout


def a1_changes(plan: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(c["store"], c["fields"]["quantity"]["old"], c["fields"]["quantity"]["new"])
            for c in plan["changes"] if c["sku"] == "A-1" and "quantity" in c["fields"]]


def stock(a1: str) -> list[str]:
    return [catalog_row("A-1", stock=a1), catalog_row("B-2", stock="3"),
            catalog_row("C-3", stock="4")]


# --- over loopback ------------------------------------------------------------------------------

def test_reserved_units_keep_the_quantity_back_market_lowered_until_the_order_ships(
        tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path, emulator, sqlite_url(tmp_path), monkeypatch,
                     orders="reserve_unshipped = true\n")
    order = sell_two(shop)

    # The export still says 5: the 2 sold units are held back, nothing is raised.
    plan = shop.plan_json()
    assert a1_changes(plan) == []
    for store in ("fr", "de"):
        assert (f"store {store}: 2 units of 1 SKU reserved for pulled, unshipped order "
                "lines") in " ".join(plan["notes"])
    text = shop.run("plan").stdout
    assert "Note: store fr: 2 units of 1 SKU reserved" in text
    assert "reserve_unshipped" in shop.run("plan", "--format", "markdown").stdout
    shop.run("apply")
    assert shop.live("A-1", "fr-fr")["quantity"] == 3  # type: ignore[index]
    assert shop.live("A-1", "de-de")["quantity"] == 3  # type: ignore[index]

    # The documented price of never overselling: an export that counts the sale before it
    # ships has it subtracted twice, until the line ships.
    shop.catalog(stock("3"))
    assert a1_changes(shop.plan_json()) == [("fr", 3, 1), ("de", 3, 1)]

    # Shipped: the line no longer reserves; the export's 3 is published as it is.
    ship(shop, order)
    plan = shop.plan_json()
    assert a1_changes(plan) == [] and not any("reserved" in n for n in plan["notes"])
    shop.run("apply")
    assert shop.live("A-1", "fr-fr")["quantity"] == 3  # type: ignore[index]


def test_a_row_published_with_units_held_back_is_planned_again_once_they_ship(
        tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path, emulator, sqlite_url(tmp_path), monkeypatch,
                     orders="reserve_unshipped = true\n")
    order = place(shop, [("A-1", 2)])
    shop.run("orders", "pull")
    shop.run("orders", "accept")
    # Not reconciled: the snapshot still says 5, the reservation makes it 3.
    assert a1_changes(shop.plan_json()) == [("fr", 5, 3), ("de", 5, 3)]
    shop.run("apply")
    assert a1_changes(shop.plan_json()) == []  # the same row, the same reservation
    ship(shop, order)
    # The row is the same, but it was published with units held back that no longer are:
    # it is validated again, not taken as unchanged (the export is trusted once shipped).
    assert a1_changes(shop.plan_json()) == [("fr", 3, 5), ("de", 3, 5)]


def test_without_the_setting_the_plan_says_it_raises_units_sold_and_not_shipped(
        tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path, emulator, sqlite_url(tmp_path), monkeypatch)
    order = sell_two(shop)
    plan = shop.plan_json()
    assert a1_changes(plan) == [("fr", 3, 5), ("de", 3, 5)]
    notes = " ".join(plan["notes"])
    assert ("store fr: this plan raises the quantity of 1 SKU with 2 units in pulled, "
            "unshipped order lines") in notes
    assert "[orders] reserve_unshipped = true" in notes
    assert "Note: store de: this plan raises" in shop.run("plan", code=2).stdout
    ship(shop, order)
    assert not any("unshipped" in n for n in shop.plan_json()["notes"])


def test_reserve_unshipped_is_off_by_default_and_must_be_a_boolean(tmp_path: Path) -> None:
    config = tmp_path / "syncer.toml"
    config.write_text("[orders]\n", encoding="utf-8")
    assert load_settings(config).orders.reserve_unshipped is False
    config.write_text("[orders]\nreserve_unshipped = true\n", encoding="utf-8")
    assert load_settings(config).orders.reserve_unshipped is True
    config.write_text('[orders]\nreserve_unshipped = "sometimes"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"orders\.reserve_unshipped"):
        load_settings(config)


# --- the pure parts ---------------------------------------------------------------------------

def test_unshipped_units_add_up_per_sku_and_skip_shipped_and_cancelled_lines() -> None:
    lines = [
        ("A-1", 2, 2),   # accepted
        ("a-1", 1, 1),   # paid, the same SKU in another case
        ("A-1", 4, 3),   # shipped
        ("A-1", 3, 4),   # cancelled
        ("B-2", 1, 5),   # refunded before shipping
        ("B-2", 1, 6),   # refunded after shipping
        ("B-2", 2, 7),   # not paid
        ("C-3", 1, 8),   # pending payment
        ("C-3", 1, 9),   # on hold
        ("D-4", 0, 2),   # no units
        ("", 1, 2),      # no SKU
    ]
    assert unshipped_units(lines) == {"a-1": 3, "c-3": 2}
    assert unshipped_units([]) == {}


def test_notes_count_units_and_skus_and_say_nothing_without_them() -> None:
    assert reserved_note("fr", {}) is None and unshipped_note("fr", {}) is None
    assert reserved_note("fr", {"a-1": 2, "b-2": 1}).startswith(  # type: ignore[union-attr]
        "store fr: 3 units of 2 SKUs reserved")
    assert unshipped_note("de", {"a-1": 1}).startswith(  # type: ignore[union-attr]
        "store de: this plan raises the quantity of 1 SKU with 1 unit in")


def test_validation_holds_back_units_before_the_cap_per_store_and_never_below_zero(
        ) -> None:
    stores = [StoreSettings(name="fr", locale="fr-fr"), StoreSettings(name="de", locale="de-de")]
    profile = load_profile(BUNDLED_MAPPINGS / "default.toml")
    mapping = compile_mapping(profile, HEADER.split(";"), stores)
    validator = Validator(mapping, reserved={
        "fr": {"a-1": 2, "b-2": 9, "c-3": 2, "d-4": 2, "e-5": 1}, "de": {}})
    rows = [catalog_row("A-1", stock="5", safety="1"),
            catalog_row("B-2", stock="3"),                          # more reserved than stock
            catalog_row("C-3", stock="100", max_quantity="10"),     # plenty: the cap rules
            catalog_row("D-4", stock="11", max_quantity="10"),
            catalog_row("E-5", stock="2", safety="1"),
            catalog_row("F-6", stock="4")]                          # nothing reserved
    quantities = {(o.store, o.sku): (o.quantity, o.published()[3])
                  for number, row in enumerate(rows, 2)
                  for o in validator.validate(number, row.split(";")).offers}
    fr = {sku: q for (store, sku), q in quantities.items() if store == "fr"}
    de = {sku: q for (store, sku), q in quantities.items() if store == "de"}
    assert fr == {"A-1": (2, 2), "B-2": (0, 0), "C-3": (10, 10), "D-4": (9, 9),
                  "E-5": (0, 0), "F-6": (4, 4)}
    assert de == {"A-1": (4, 4), "B-2": (3, 3), "C-3": (10, 10), "D-4": (10, 10),
                  "E-5": (1, 1), "F-6": (4, 4)}


def _order(order_id: int, lines: list[tuple[str, int, int]]) -> dict[str, Any]:
    return {"order_id": order_id, "state": 1, "country_code": "fr-fr", "currency": "EUR",
            "orderlines": [{"id": order_id * 10 + n, "listing": sku, "quantity": quantity,
                            "state": state} for n, (sku, quantity, state) in enumerate(lines)]}


def test_units_count_over_every_store_of_the_account_and_no_other(state_url: str) -> None:
    fr = StoreSettings(name="fr", locale="fr-fr")
    de = StoreSettings(name="de", locale="de-de")
    us = StoreSettings(name="us", locale="en-us")
    with StateStore.open(state_url) as state:
        assert unshipped_by_store([fr], state) == {"fr": {}}
        for store, order in ((fr, _order(1, [("A-1", 1, 2), ("B-2", 1, 3)])),
                             (de, _order(2, [("A-1", 2, 1), ("B-2", 1, 4)])),
                             (us, _order(3, [("A-1", 5, 2)]))):
            row, lines = order_rows(store.account, store.name, order)
            state.orders.save_orders([row], lines)
        found = unshipped_by_store([fr, de, us], state)
    assert found == {"fr": {"a-1": 3}, "de": {"a-1": 3}, "us": {"a-1": 5}}
