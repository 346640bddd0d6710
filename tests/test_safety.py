"""Issue 10 over loopback: a damaged row never zeroes, raises or blanks a live offer, and the
mass-change guard sees every way a catalog can empty a store.

Every test starts from five offers A-1..E-5 live (quantity 5) in both stores of one account,
publishes a damaged catalog through the real CLI, and asserts on what the emulator holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stdnum import ean as ean_check

from syncer.emulator.server import EmulatorServer
from tests.conftest import HEADER, TOKEN, catalog_row
from tests.helpers import Shop

LIVE = ("A-1", "B-2", "C-3", "D-4", "E-5")
OTHER_EAN = "526018159083"
OTHER_EAN += ean_check.calc_check_digit(OTHER_EAN)


@pytest.fixture
def shop(tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Shop:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop = Shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state' / 'syncer.db'}")
    shop.catalog([catalog_row(sku) for sku in LIVE])
    shop.run("apply")
    return shop


def write(shop: Shop, rows: list[str], header: str = HEADER) -> None:
    (shop.folder / "catalog.csv").write_text(header + "\n" + "".join(r + "\n" for r in rows),
                                             encoding="utf-8")


def quantities(shop: Shop, locale: str = "fr-fr") -> dict[str, int]:
    return {sku: shop.live(sku, locale)["quantity"] for sku in LIVE}  # type: ignore[index]


def listing_skus(shop: Shop) -> set[str]:
    return {listing["sku"] for listing in shop.server.emulator.listings(TOKEN)}


def store_setting(shop: Shop, line: str) -> None:
    """Add a line to every [[stores]] table of the shop's config."""
    text = shop.config.read_text()
    shop.config.write_text(text.replace('token_env = "SYNCER_TEST_TOKEN"',
                                        f'token_env = "SYNCER_TEST_TOKEN"\n{line}'))


def limits(shop: Shop, lines: str) -> None:
    shop.config.write_text(shop.config.read_text() + f"\n[limits]\n{lines}\n")


# --- 1. a row that cannot be tied to a SKU -----------------------------------------------------

def test_a_stray_quote_in_a_sku_cell_rejects_the_row_and_zeroes_nothing(shop: Shop) -> None:
    write(shop, ['"A-1"""' + catalog_row("A-1")[3:], *map(catalog_row, LIVE[1:])])
    plan = shop.plan_json()
    assert [(r["row"], r["field"]) for r in plan["rejections"]] == [(2, "sku")]
    assert plan["changes"] == []
    assert {(n["store"], n["kind"], n["sku"]) for n in plan["notices"]} == \
        {("fr", "kept-uncertain", "A-1"), ("de", "kept-uncertain", "A-1")}
    assert any("cannot be tied to a SKU" in note for note in plan["notes"])
    shop.run("apply")
    assert quantities(shop) == dict.fromkeys(LIVE, 5)
    assert listing_skus(shop) == set(LIVE)


def test_a_shifted_row_is_never_tied_to_the_sku_in_another_column(shop: Shop) -> None:
    # The seller's export puts grade first; row A-1 lost its grade cell: every cell moved one
    # column left, and the SKU column holds the EAN.
    header = "grade;" + HEADER.replace("grade;", "")
    def row(sku: str) -> str:
        cells = catalog_row(sku).split(";")
        return ";".join([cells[3], *cells[:3], *cells[4:]])
    write(shop, [";".join(catalog_row("A-1").split(";")[:3] + catalog_row("A-1").split(";")[4:]),
                 *map(row, LIVE[1:])], header=header)
    plan = shop.plan_json()
    assert [(r["row"], r["field"], r["sku"]) for r in plan["rejections"]] == [(2, "row", None)]
    assert plan["changes"] == []
    shop.run("apply")
    assert quantities(shop) == dict.fromkeys(LIVE, 5)


def test_explicit_stock_outs_still_go_out_beside_an_uncertain_row(shop: Shop) -> None:
    write(shop, ["A-1;broken", catalog_row("B-2", stock="0"), *map(catalog_row, LIVE[2:])])
    plan = shop.plan_json()
    assert {(c["store"], c["action"], c["sku"]) for c in plan["changes"]} == \
        {("fr", "update", "B-2"), ("de", "update", "B-2")}
    shop.run("apply")
    assert quantities(shop) == {**dict.fromkeys(LIVE, 5), "B-2": 0}


def test_a_row_of_only_a_sku_looking_cell_is_rejected_and_zeroes_nothing(shop: Shop) -> None:
    # Row 2 holds "A-1" alone (its other cells lost), and E-5 is really gone: the row cannot
    # be tied to A-1 with certainty, so neither A-1 nor E-5 is taken for gone this run.
    write(shop, ["A-1", *map(catalog_row, LIVE[1:4])])
    plan = shop.plan_json()
    [rejection] = plan["rejections"]
    assert (rejection["row"], rejection["field"], rejection["sku"], rejection["value"]) == \
        (2, "row", None, "1 fields")
    assert "13 fields as in the header" in rejection["expected"]
    assert plan["changes"] == []
    assert {(n["store"], n["kind"], n["sku"]) for n in plan["notices"]} == \
        {(store, "kept-uncertain", sku) for store in ("fr", "de") for sku in ("A-1", "E-5")}
    sent = len(shop.server.emulator.exchanges)
    shop.run("apply")
    assert [e for e in shop.server.emulator.exchanges[sent:] if e.method == "POST"] == []
    assert quantities(shop) == quantities(shop, "de-de") == dict.fromkeys(LIVE, 5)
    assert listing_skus(shop) == set(LIVE)


# --- 2. an empty per-store price -----------------------------------------------------------------

def test_empty_prices_everywhere_reject_the_row_and_keep_the_offer_live(shop: Shop) -> None:
    write(shop, [catalog_row("A-1", price_fr="", price_de=""), *map(catalog_row, LIVE[1:])])
    plan = shop.plan_json()
    assert plan["changes"] == []
    assert {(r["row"], r["field"], r["store"]) for r in plan["rejections"]} == \
        {(2, "price", "fr"), (2, "price", "de")}
    text = shop.run("plan", code=0).stdout
    assert "price is empty; expected a price in column 'price_fr': the offer is live in " \
           "store fr (quantity 5 at 199.90 EUR) and stays live as published" in text
    shop.run("apply")
    assert quantities(shop) == dict.fromkeys(LIVE, 5)
    assert shop.live("A-1", "fr-fr")["price"] == "199.90"  # type: ignore[index]


def test_a_store_that_withdraws_unpriced_offers_zeroes_them_and_says_why(shop: Shop) -> None:
    store_setting(shop, 'empty_price = "withdraw"')
    write(shop, [catalog_row("A-1", price_fr="", price_de=""), *map(catalog_row, LIVE[1:])])
    plan = shop.plan_json()
    assert plan["rejections"] == []
    assert {(c["store"], c["action"], c["sku"]) for c in plan["changes"]} == \
        {("fr", "zero", "A-1"), ("de", "zero", "A-1")}
    assert {(n["store"], n["kind"]) for n in plan["notices"]} == {("fr", "withdrawn"),
                                                                  ("de", "withdrawn")}
    shop.run("apply")
    assert quantities(shop) == {**dict.fromkeys(LIVE, 5), "A-1": 0}


def test_a_withdrawal_from_one_country_of_a_listing_is_reported_not_silent(shop: Shop) -> None:
    store_setting(shop, 'empty_price = "withdraw"')
    write(shop, [catalog_row("A-1", price_de=""), *map(catalog_row, LIVE[1:])])
    plan = shop.plan_json()
    assert plan["changes"] == [] and plan["rejections"] == []
    [notice] = plan["notices"]
    assert (notice["store"], notice["kind"]) == ("de", "dropped-from-store")
    assert "stays on sale here at its last published price" in notice["message"]


def test_a_new_offer_without_a_price_in_a_store_is_simply_not_offered_there(shop: Shop) -> None:
    write(shop, [*map(catalog_row, LIVE), catalog_row("F-6", price_de="")])
    plan = shop.plan_json()
    assert plan["rejections"] == []
    assert {(c["store"], c["action"], c["sku"]) for c in plan["changes"]} == \
        {("fr", "create", "F-6")}


# --- 3. a cut-off file ------------------------------------------------------------------------

def test_a_file_cut_in_its_last_row_is_refused_and_nothing_goes_offline(shop: Shop) -> None:
    text = HEADER + "\n" + "".join(catalog_row(sku) + "\n" for sku in LIVE)
    (shop.folder / "catalog.csv").write_text(text[:text.index("C-3") + 9], encoding="utf-8")
    before = len(shop.server.emulator.exchanges)
    for command in ("plan", "apply"):
        result = shop.run(command, code=1)
        assert "ends in the middle of row 4" in result.stderr
        assert "Export the catalog again" in result.stderr
    assert len(shop.server.emulator.exchanges) == before
    assert quantities(shop) == quantities(shop, "de-de") == dict.fromkeys(LIVE, 5)


# --- 4. mixed encodings ------------------------------------------------------------------------

def test_utf8_rows_stay_utf8_beside_a_cp1252_row_and_the_plan_names_it(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_CATALOG__LEGACY_ENCODING", "cp1252")
    data = (HEADER + "\n").encode()
    for sku in LIVE:
        line = catalog_row(sku, comment_fr="Téléphone très bon état") + "\n"
        data += line.encode("cp1252" if sku == "C-3" else "utf-8")
    (shop.folder / "catalog.csv").write_bytes(data)
    plan = shop.plan_json()
    assert {c["sku"] for c in plan["changes"]} == set(LIVE)
    [note] = [n for n in plan["notes"] if "UTF-8" in n]
    assert "catalog row 4 is not valid UTF-8 and was read as cp1252" in note
    assert plan["catalog"].endswith("(UTF-8, the other lines as cp1252, delimiter ';')")
    assert "row 4 is not valid UTF-8" in shop.run("plan", code=2).stdout
    shop.run("apply")
    assert {sku: shop.live(sku, "fr-fr")["comment"] for sku in LIVE} == \
        dict.fromkeys(LIVE, "Téléphone très bon état")


# --- 5. invisible characters in a SKU ------------------------------------------------------------

@pytest.mark.parametrize("sku", ["A\u200b-1", "\ufeffA-1", "A\u00a0-1", "A-1\u2060", "A\u00ad-1",
                                 "A\u202e-1"], ids=["zwsp", "bom", "nbsp", "word-joiner",
                                                    "soft-hyphen", "rtl-override"])
def test_a_sku_with_an_invisible_character_is_rejected_not_a_second_listing(
        shop: Shop, sku: str) -> None:
    write(shop, [catalog_row(sku), *map(catalog_row, LIVE[1:])])
    plan = shop.run("plan", code=0)
    assert "<U+" in plan.stdout  # shown, not invisible
    assert json.loads(shop.run("plan", "--format", "json", code=0).stdout)["changes"] == []
    shop.run("apply")
    assert listing_skus(shop) == set(LIVE)
    assert quantities(shop) == dict.fromkeys(LIVE, 5)


# --- 6. a renamed or missing column --------------------------------------------------------------

@pytest.mark.parametrize("column", ["safety_stock", "max_quantity", "comment_fr", "warranty_de"])
def test_a_renamed_column_stops_the_plan_instead_of_becoming_its_default(
        shop: Shop, column: str) -> None:
    rows = [catalog_row(sku, safety="2", max_quantity="2", comment_fr="Très bon état",
                        warranty_de="24") for sku in LIVE]
    write(shop, rows)
    shop.run("apply")
    before = {sku: shop.live(sku, "fr-fr") for sku in LIVE}
    write(shop, rows, header=HEADER.replace(column, column.upper() + " (new)"))
    sent = len(shop.server.emulator.exchanges)
    for command in ("plan", "apply"):
        result = shop.run(command, code=1)
        assert f"catalog has no column '{column}'" in result.stderr
        assert "mark it optional = true" in result.stderr
    assert len(shop.server.emulator.exchanges) == sent
    assert {sku: shop.live(sku, "fr-fr") for sku in LIVE} == before
    assert before["A-1"]["quantity"] == 2 and before["A-1"]["comment"] == "Très bon état"  # type: ignore[index]


def use_safety_mapping(shop: Shop, safety: str) -> None:
    """Point the shop at a copy of the default profile whose safety_quantity is ``safety``."""
    mappings = Path(__file__).parent.parent / "mappings"
    profile = shop.folder / "mine.toml"
    text = (mappings / "default.toml").read_text()
    profile.write_text(text.replace('{ column = "safety_stock", default = "0" }', safety)
                       .replace('grades = "grades.toml"', f'grades = "{mappings / "grades.toml"}"')
                       .replace('carriers = "carriers.toml"',
                                f'carriers = "{mappings / "carriers.toml"}"'))
    shop.config.write_text(shop.config.read_text().replace('mapping = "default"',
                                                           f'mapping = "{profile}"'))


def test_a_column_marked_optional_may_be_missing(shop: Shop) -> None:
    use_safety_mapping(shop, '{ column = "safety_stock", default = "0", optional = true }')
    write(shop, list(map(catalog_row, LIVE)), header=HEADER.replace("safety_stock", "other"))
    plan = shop.plan_json()
    assert plan["changes"] == []
    assert any("'safety_stock' for safety_quantity is not in the catalog" in note
               for note in plan["notes"])


def test_the_default_safety_quantity_of_a_profile_without_the_column_is_held_back(
        shop: Shop) -> None:
    # The profile maps safety_stock as optional with a default of 2, and the catalog has no
    # such column at all: every row publishes its stock less 2, not its whole stock.
    use_safety_mapping(shop, '{ column = "safety_stock", default = "2", optional = true }')
    header = HEADER.replace("safety_stock;", "")

    def row(sku: str, stock: str) -> str:
        cells = catalog_row(sku, stock=stock).split(";")
        return ";".join(cells[:5] + cells[6:])
    write(shop, [row("A-1", "9"), row("B-2", "2"), *(row(sku, "5") for sku in LIVE[2:])],
          header=header)
    plan = shop.plan_json()
    assert plan["rejections"] == []
    assert any("'safety_stock' for safety_quantity is not in the catalog: '2' for every row"
               in note for note in plan["notes"])
    shop.run("apply")
    expected = {"A-1": 7, "B-2": 0, "C-3": 3, "D-4": 3, "E-5": 3}
    assert quantities(shop) == quantities(shop, "de-de") == expected


# --- 7. a case variant of a SKU for another product ----------------------------------------------

def test_a_case_variant_sku_for_another_product_is_a_conflict_not_an_update(shop: Shop) -> None:
    write(shop, [catalog_row("a-1", ean=OTHER_EAN, stock="9"), *map(catalog_row, LIVE[1:])])
    plan = shop.plan_json()
    assert plan["changes"] == []
    assert {(r["row"], r["field"], r["store"]) for r in plan["rejections"]} == \
        {(2, "ean", "fr"), (2, "ean", "de")}
    expected = plan["rejections"][0]["expected"]
    assert "'a-1' is its listing 'A-1'" in expected and "cannot be changed" in expected
    assert "give it a SKU of its own" in expected
    shop.run("apply")  # exit 0: nothing is sent for Back Market to refuse
    assert quantities(shop) == dict.fromkeys(LIVE, 5)
    assert shop.live("A-1", "fr-fr")["sku"] == "A-1"  # type: ignore[index]


def test_the_same_product_under_a_case_variant_sku_is_a_plain_update(shop: Shop) -> None:
    write(shop, [catalog_row("a-1", stock="9"), *map(catalog_row, LIVE[1:])])
    plan = shop.plan_json()
    assert plan["rejections"] == []
    assert {(c["store"], c["action"]) for c in plan["changes"]} == {("fr", "update"),
                                                                     ("de", "update")}


# --- 8. the mass-change guard --------------------------------------------------------------------

@pytest.mark.parametrize("damage", [{"stock": "0"}, {"max_quantity": "0"},
                                    {"safety": "5"}], ids=["stock-0", "max-quantity-0",
                                                           "safety-equals-stock"])
def test_a_catalog_that_zeroes_every_row_stops_before_sending(
        shop: Shop, damage: dict[str, str]) -> None:
    write(shop, [catalog_row(sku, **damage) for sku in LIVE])
    plan = shop.plan_json()
    assert [s["safety_stop"] is not None for s in plan["stores"]] == [True, True]
    assert plan["stores"][0]["takes_offline"] == 5
    text = shop.run("plan", code=2).stdout
    assert "apply would stop here: store fr: the plan would zero 5 of 5 live offers" in text
    assert "5 with a quantity of 0" in text
    assert "`apply` would stop:" in shop.run("plan", "--format", "markdown", code=2).stdout
    sent = len(shop.server.emulator.exchanges)
    result = shop.run("apply", code=1)
    assert "would zero 5 of 5 live offers (100%" in result.stderr
    assert len(shop.server.emulator.exchanges) == sent
    assert quantities(shop) == dict.fromkeys(LIVE, 5)
    shop.run("apply", "--force")
    assert quantities(shop) == dict.fromkeys(LIVE, 0)


def test_one_removed_sku_of_a_small_store_passes_the_absolute_allowance(shop: Shop) -> None:
    write(shop, [catalog_row(sku) for sku in LIVE[:3]])  # 5 live: 2 gone would be 40%
    assert "apply would stop" in shop.run("plan", code=2).stdout
    write(shop, [catalog_row(sku) for sku in LIVE[1:4]])
    limits(shop, "max_zero_share = 0.1\nzero_allowance = 2")
    plan = shop.plan_json()  # 2 of 5 gone (40% > 10%), but within the allowance of 2
    assert [s["safety_stop"] for s in plan["stores"]] == [None, None]
    shop.run("apply")
    assert quantities(shop) == {**dict.fromkeys(LIVE, 5), "A-1": 0, "E-5": 0}


def test_every_live_offer_of_a_store_is_never_within_the_allowance(shop: Shop) -> None:
    limits(shop, "zero_allowance = 10")
    write(shop, [])
    result = shop.run("apply", code=1)
    assert "that is every live offer" in result.stderr
    assert quantities(shop) == dict.fromkeys(LIVE, 5)


def test_exactly_the_zero_share_goes_through_and_one_offer_more_stops(shop: Shop) -> None:
    limits(shop, "zero_allowance = 0")  # the share alone decides: the default 20%
    write(shop, [catalog_row(sku) for sku in LIVE[2:]])  # 2 of 5 gone: 40%
    sent = len(shop.server.emulator.exchanges)
    result = shop.run("apply", code=1)
    assert "would zero 2 of 5 live offers (40%, limit 20% beyond 0 offers" in result.stderr
    assert len(shop.server.emulator.exchanges) == sent
    write(shop, [catalog_row(sku) for sku in LIVE[1:]])  # 1 of 5 gone: exactly 20%
    plan = shop.plan_json()
    assert [s["safety_stop"] for s in plan["stores"]] == [None, None]
    shop.run("apply")
    assert quantities(shop) == quantities(shop, "de-de") == {**dict.fromkeys(LIVE, 5), "A-1": 0}


def test_exactly_the_zero_allowance_goes_through_and_one_offer_more_stops(shop: Shop) -> None:
    limits(shop, "max_zero_share = 0.0\nzero_allowance = 2")  # the allowance alone decides
    write(shop, [catalog_row(sku) for sku in LIVE[3:]])  # 3 gone: one over the allowance
    sent = len(shop.server.emulator.exchanges)
    result = shop.run("apply", code=1)
    assert "would zero 3 of 5 live offers (60%, limit 0% beyond 2 offers" in result.stderr
    assert len(shop.server.emulator.exchanges) == sent
    write(shop, [catalog_row(sku) for sku in LIVE[2:]])  # 2 gone: exactly the allowance
    plan = shop.plan_json()
    assert [s["safety_stop"] for s in plan["stores"]] == [None, None]
    shop.run("apply")
    assert quantities(shop) == {**dict.fromkeys(LIVE, 5), "A-1": 0, "B-2": 0}
