"""Pricing through the plan (issue 15, part 4), end to end over loopback: the emulator's
market has a competitor below us; `syncer market` shows the BackBox lost and the price to
win; `syncer plan` shows the move with its trace; `syncer apply` sends it and the emulator
then reports the BackBox won. A competitor below our floor, stale data, the cooldown: no
move, and the plan says why. The price guard stops a mass move unless --force; the hourly
budget sends the moves that win a BackBox first and the plan says what waits; no plan ever
prices outside the floor and the ceiling, nor moves a price further than the per-run step."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncer.config.settings import BUNDLED_MAPPINGS, StoreSettings, load_settings
from syncer.core.competition import Competition
from syncer.core.offers import FIELDS, Offer
from syncer.core.snapshot import SnapshotEntry
from syncer.emulator.server import EmulatorServer
from syncer.planning.diff import Change, ChangeLog, SnapshotMap, StoreDiff
from syncer.planning.mapping import compile_mapping, load_profile
from syncer.planning.pricing import RowPricing, bounds
from syncer.planning.pricing_plan import StorePricer
from syncer.planning.pricing_rules import PricingRules
from syncer.state.store import StateStore
from tests.conftest import HEADER, TOKEN, catalog_row, write_catalog
from tests.helpers import Shop

PRICED_HEADER = HEADER + ";cost;shipping_cost_fr"
FREE_EANS = ("4006381333931", "4006381333948", "4006381333955", "4006381333962",
             "4006381333979", "4006381333986")
# 308 / (1 - 10% - 5%) = 362.3529..., rounded up
FLOOR_A = "floor 362.36 = (cost 300.00 + shipping 8.00) / (1 - commission 10% - margin 5%)"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)


def profile_text(**rules: str) -> str:
    """The bundled default profile with its [pricing] keys set as given."""
    text = (BUNDLED_MAPPINGS / "default.toml").read_text(encoding="utf-8")
    head, _, tail = text.partition("[pricing]\n")
    lines = tail.split("\n")
    for key, value in rules.items():
        for number, line in enumerate(lines):
            if line.startswith(f"{key} = "):
                lines[number] = f"{key} = {value}"
                break
        else:
            raise AssertionError(f"no pricing key {key}")
    return head + "[pricing]\n" + "\n".join(lines)


def make_shop(tmp_path: Path, emulator: EmulatorServer, extra: str = "", **rules: str) -> Shop:
    shop = Shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state.db'}",
                stores=(("fr", "fr-fr"),), extra=extra)
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "default.toml").write_text(
        profile_text(**{"strategy": '"win"', "margin_share": '"5%"', **rules}),
        encoding="utf-8")
    return shop


EANS: dict[str, str] = {}  # SKU -> its own product: one BackBox each


def row(sku: str, price: str, cost: str, shipping: str = "8", **cells: str) -> str:
    ean = EANS.setdefault(sku, FREE_EANS[len(EANS) % len(FREE_EANS)])
    return catalog_row(sku, price_fr=price, ean=ean, **cells) + f";{cost};{shipping}"


def priced_catalog(shop: Shop, rows: list[str]) -> Path:
    return write_catalog(shop.folder / "catalog.csv", rows, header=PRICED_HEADER)


def admin(server: EmulatorServer, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(f"{server.base_url}/_emulator/{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def rival(server: EmulatorServer, sku: str, price: str) -> None:
    admin(server, "market", {"token": TOKEN, "sku": sku, "market": "FR", "price": price,
                             "seller": "cheaper"})


def market_rows(shop: Shop, *args: str) -> dict[str, dict[str, Any]]:
    report = json.loads(shop.run("market", "--format", "json", *args).stdout)
    return {r["sku"]: r for r in report["listings"]}


def updates(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["sku"]: c for c in plan["changes"] if c["action"] == "update"}


def budget_key(shop: Shop) -> str:
    return load_settings(shop.config).store("fr").budget_key


def a_new_hour(shop: Shop) -> None:
    """The hourly SKU budget as if its hour had passed."""
    with StateStore.open(shop.state_url) as state:
        state.budget.refund(budget_key(shop), state.budget.used(budget_key(shop)))


def price_moves(shop: Shop) -> dict[str, list[tuple[datetime, Decimal, Decimal]]]:
    with StateStore.open(shop.state_url) as state:
        return state.market.price_moves("fr", datetime.now(UTC) - timedelta(days=1))


# --- end to end -------------------------------------------------------------------------------

def test_a_competitor_below_us_is_beaten_through_plan_and_apply(
        tmp_path: Path, emulator: EmulatorServer) -> None:
    shop = make_shop(tmp_path, emulator, cooldown_minutes="0")
    priced_catalog(shop, [row("A-1", "409.00", "300"), row("B-2", "250.00", "100")])
    shop.run("apply")
    rival(emulator, "A-1", "399.00")
    rival(emulator, "B-2", "100.00")  # below B-2's floor, 108 / 0.85 = 127.06

    rows = market_rows(shop, "--refresh")
    assert rows["A-1"]["is_winning"] is False
    assert rows["A-1"]["price_to_win"] == "398.99"
    assert (rows["A-1"]["floor"], rows["A-1"]["ceiling"]) == ("362.36", "409.00")
    assert rows["A-1"]["suggested_price"] == "398.98"
    assert rows["A-1"]["reason"].startswith(
        "price 409.00 → 398.98: win (price to win 398.99, step 0.01); " + FLOOR_A)
    assert rows["B-2"]["suggested_price"] == "250.00"
    assert "competitor below our floor 127.06" in rows["B-2"]["reason"]

    plan = shop.plan_json()
    moves = updates(plan)
    assert set(moves) == {"A-1"}  # B-2: no move
    move = moves["A-1"]
    assert move["fields"] == {"price": {"old": "409.00", "new": "398.98"}}
    assert move["pricing"].startswith(
        f"price 409.00 → 398.98: win (price to win 398.99, step 0.01); {FLOOR_A}; "
        "ceiling 409.00 = catalog price; competitor data ")
    assert move["pricing"].endswith(" s old")
    assert move["reason"] == move["pricing"]
    assert move["gain"] == "51.08"  # 398.98 less 10% commission, 300 cost and 8 shipping
    held = [n for n in plan["notices"] if n["sku"] == "B-2"]
    assert [n["kind"] for n in held] == ["price-held"]
    assert held[0]["message"].startswith(
        "BackBox lost, price not moved: price 250.00: competitor below our floor 127.06 "
        "(price to win 99.99): no move")

    text = shop.run("plan", code=2).stdout
    assert "UPDATE  A-1 (row 2): price 409.00 → 398.98: win (price to win 398.99" in text
    assert "NOTE    B-2: BackBox lost, price not moved: price 250.00: competitor below" in text
    markdown = shop.run("plan", "--format", "markdown", code=2).stdout
    assert "| update | `A-1` | 2 | price 409.00 → 398.98: win (price to win 398.99" in markdown

    shop.run("apply")
    assert shop.live("A-1", "fr-fr")["price"] == "398.98"  # type: ignore[index]
    assert shop.live("B-2", "fr-fr")["price"] == "250.00"  # type: ignore[index]
    [(_, old, new)] = price_moves(shop)["a-1"]
    assert (old, new) == (Decimal("409.00"), Decimal("398.98"))

    rows = market_rows(shop, "--refresh")
    assert rows["A-1"]["is_winning"] is True
    assert rows["A-1"]["reason"] == "price 398.98: winning the BackBox: no move"
    # Winning: nothing more to send, though the catalog still says 409.00.
    assert updates(shop.plan_json()) == {}


def test_stale_competition_data_never_moves_a_price(tmp_path: Path,
                                                    emulator: EmulatorServer) -> None:
    shop = make_shop(tmp_path, emulator, max_age_minutes="30")
    priced_catalog(shop, [row("A-1", "409.00", "300")])
    shop.run("apply")
    rival(emulator, "A-1", "399.00")
    shop.run("market", "--refresh")
    assert "A-1" in updates(shop.plan_json())  # fresh: it would move

    account = load_settings(shop.config).store("fr").account
    with StateStore.open(shop.state_url) as state:
        [data] = state.market.competition(account).values()
        old = datetime.now(UTC) - timedelta(minutes=31)
        state.market.save_competition(account, [Competition(**{
            **{f: getattr(data, f) for f in data.__slots__}, "read_at": old})])
    plan = shop.plan_json()
    assert updates(plan) == {}
    [notice] = plan["notices"]
    assert notice["kind"] == "price-held"
    assert "competition data 31 min old (max 30 min): no move" in notice["message"]
    shop.run("apply")
    assert shop.live("A-1", "fr-fr")["price"] == "409.00"  # type: ignore[index]


def test_a_confirmed_move_starts_the_cooldown(tmp_path: Path, emulator: EmulatorServer) -> None:
    shop = make_shop(tmp_path, emulator, cooldown_minutes="60")
    priced_catalog(shop, [row("A-1", "409.00", "300")])
    shop.run("apply")
    rival(emulator, "A-1", "399.00")
    shop.run("market", "--refresh")
    shop.run("apply")
    assert shop.live("A-1", "fr-fr")["price"] == "398.98"  # type: ignore[index]
    rival(emulator, "A-1", "390.00")  # undercut again at once
    shop.run("market", "--refresh")
    plan = shop.plan_json()
    assert updates(plan) == {}
    [notice] = plan["notices"]
    assert "cooldown: last move " in notice["message"]
    assert "(min 1 h): no move" in notice["message"]


def test_a_mass_price_move_stops_apply_unless_forced(tmp_path: Path,
                                                     emulator: EmulatorServer) -> None:
    shop = make_shop(tmp_path, emulator, max_change_per_run='"50%"', cooldown_minutes="0",
                     max_change_per_day='"100%"')
    skus = [f"S-{i}" for i in range(3)]
    priced_catalog(shop, [row(sku, "400.00", "100") for sku in skus])
    shop.run("apply")
    for sku in skus:
        rival(emulator, sku, "300.00")  # 25% below us: every offer would move by 25%
    shop.run("market", "--refresh")
    plan = shop.plan_json()
    stop = plan["stores"][0]["price_stop"]
    assert stop.startswith("store fr: the plan would change the price of 3 of 3 live offers "
                           "by more than 10%")
    assert plan["stores"][0]["safety_stop"] == stop
    assert "STOP    apply would stop here: store fr: the plan would change the price" in \
        shop.run("plan", code=2).stdout

    result = shop.run("apply", code=None)
    assert result.exit_code != 0
    assert "would change the price of 3 of 3 live offers" in result.output + result.stderr
    assert {shop.live(sku, "fr-fr")["price"] for sku in skus} == {"400.00"}  # type: ignore[index]

    shop.run("apply", "--force")
    assert {shop.live(sku, "fr-fr")["price"] for sku in skus} == {"299.98"}  # type: ignore[index]


def test_the_budget_sends_the_largest_win_first_and_the_plan_says_what_waits(
        tmp_path: Path, emulator: EmulatorServer) -> None:
    shop = make_shop(tmp_path, emulator, extra="[limits]\nsku_lines_per_hour = 2\n",
                     cooldown_minutes="0")
    # SMALL's floor: 328 / 0.85 = 385.89; both win at 398.98, BIG earns far more.
    rows = [row("SMALL", "409.00", "320"), row("BIG", "409.00", "200")]
    priced_catalog(shop, [*rows, row("STOCK", "100.00", "50")])
    shop.run("apply")  # 3 lines of 2: one create waits for the next hour
    a_new_hour(shop)
    shop.run("apply")
    rival(emulator, "SMALL", "399.00")
    rival(emulator, "BIG", "399.00")
    shop.run("market", "--refresh")
    a_new_hour(shop)
    priced_catalog(shop, [*rows, row("STOCK", "100.00", "50", stock="9")])
    plan = shop.plan_json()
    order = [c["sku"] for c in plan["changes"]]
    assert order == ["STOCK", "BIG", "SMALL"]  # stock first, then the largest gain
    assert Decimal(plan["changes"][1]["gain"]) > Decimal(plan["changes"][2]["gain"])
    [note] = [n for n in plan["notes"] if "hourly budget" in n]
    assert "leaves 1 of 3 changes for a later run; 1 of them are price moves, which wait: " \
        "SMALL" in note


# --- properties over any competition -----------------------------------------------------------

STORE = StoreSettings(name="fr", locale="fr-fr", environment="production",
                      token_env="SYNCER_TEST_TOKEN")
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
AMOUNTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("2000"), places=2)


def offers_and_snapshot(prices: list[tuple[Decimal, Decimal, Decimal]]
                        ) -> tuple[list[Offer], dict[str, SnapshotEntry], list[RowPricing]]:
    offers, entries, inputs = [], {}, []
    for number, (catalog, current, cost) in enumerate(prices):
        sku = f"S-{number}"
        offer = Offer("fr", number + 2, sku, None, "4006381333931", "GOOD", 3, catalog, "EUR",
                      12)
        published = list(offer.published())
        published[FIELDS.index("price")] = f"{current:.2f}"
        entries[sku.casefold()] = SnapshotEntry(
            sku=sku, listing_id=f"listing-{number}", published=tuple(published),
            status="live")
        offers.append(offer)
        inputs.append(RowPricing(cost=cost, shipping=Decimal("8")))
    return offers, entries, inputs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prices=st.lists(st.tuples(AMOUNTS, AMOUNTS, AMOUNTS), min_size=1, max_size=6),
       market=st.lists(st.tuples(AMOUNTS, st.one_of(st.none(), AMOUNTS), st.booleans(),
                                 st.integers(0, 200)), min_size=6, max_size=6),
       strategy=st.sampled_from(["win", "match"]),
       step=st.sampled_from(["0.01", "0.05", "0.20"]))
def test_no_plan_prices_outside_floor_and_ceiling_nor_moves_beyond_the_step(
        prices: list[tuple[Decimal, Decimal, Decimal]],
        market: list[tuple[Decimal, Decimal | None, bool, int]], strategy: str,
        step: str) -> None:
    rules = PricingRules.model_validate({"strategy": strategy, "max_change_per_run": step,
                                         "margin_share": "0.05", "cooldown_minutes": 0})
    offers, entries, inputs = offers_and_snapshot(prices)
    competition = {
        (f"listing-{n}", "FR"): Competition(f"listing-{n}", "FR", "EUR", prices[n][1], None,
                                            to_win, winner, winning,
                                            NOW - timedelta(minutes=minutes))
        for n, (to_win, winner, winning, minutes) in enumerate(market[:len(prices)])}
    pricer = StorePricer("fr", "FR", rules, {}, competition, {}, NOW)
    differ = StoreDiff("fr", "fr-fr", 0, SnapshotMap(entries))
    differ.pricer = pricer
    for offer, row_inputs in zip(offers, inputs, strict=True):
        differ.offer(offer, None, row_inputs)
    plan = differ.finish(lambda _key: False)
    by_sku = {offer.sku: (offer, row_inputs) for offer, row_inputs in zip(offers, inputs,
                                                                           strict=True)}
    for change in plan.changes:
        assert change.pricing is not None  # only prices can change here
        offer, row_inputs = by_sku[change.sku]
        limits = bounds(offer, row_inputs, rules)
        [(name, old, new)] = change.field_changes
        assert name == "price"
        old_price, new_price = Decimal(str(old)), Decimal(str(new))
        assert limits.floor is not None and new_price >= limits.floor
        assert limits.ceiling is not None and new_price <= limits.ceiling
        assert abs(new_price - old_price) <= old_price * rules.max_change_per_run
        data = competition[(f"listing-{int(change.sku[2:])}", "FR")]
        assert data.age(NOW) <= timedelta(minutes=rules.max_age_minutes)  # never stale data


def test_the_sending_order_ranks_price_moves_as_budget_rank_does() -> None:
    target = tuple(None for _ in FIELDS)

    def change(sku: str, pricing: str | None, gain: str | None,
               fields: tuple[tuple[str, Any, Any], ...] = (("price", "2.00", "1.00"),)
               ) -> Change:
        return Change("update", "fr", sku, target, fields, pricing=pricing, gain=gain)

    changes = [change("plain", None, None), change("move", "trace", None),
               change("small-win", "trace", "5.00"), change("big-win", "trace", "50.00"),
               change("stock", None, None, (("quantity", 1, 2),))]
    assert [c.sku for c in ChangeLog(changes)] == [
        "stock", "big-win", "small-win", "move", "plain"]


def test_rows_a_strategy_prices_are_never_taken_as_unchanged_by_the_fast_path(
        tmp_path: Path) -> None:
    profile_path = tmp_path / "p.toml"
    profile_path.write_text(profile_text(strategy='"win"'), encoding="utf-8")
    profile = load_profile(profile_path)
    mapping = compile_mapping(profile, PRICED_HEADER.split(";"), [STORE])
    pricer = StorePricer("fr", "FR", profile.pricing.rules("fr"),  # type: ignore[union-attr]
                         mapping.stores[0].pricing, {}, {}, NOW)
    assert pricer.reprices(row("A", "1.00", "0.5").split(";"))
    catalog = load_profile(BUNDLED_MAPPINGS / "default.toml")
    assert catalog.pricing is not None
    plain = StorePricer("fr", "FR", catalog.pricing.rules("fr"), mapping.stores[0].pricing,
                        {}, {}, NOW)
    assert not plain.reprices(row("A", "1.00", "0.5").split(";"))


# --- what the plan says and keeps --------------------------------------------------------------

def test_a_bad_pricing_cell_is_rejected_by_row_and_column_and_only_stops_repricing(
        tmp_path: Path, emulator: EmulatorServer) -> None:
    shop = make_shop(tmp_path, emulator)
    priced_catalog(shop, [row("A-1", "409.00", "300")])
    shop.run("apply")
    rival(emulator, "A-1", "399.00")
    shop.run("market", "--refresh")
    priced_catalog(shop, [row("A-1", "409.00", "trois cents", stock="7")])
    plan = shop.plan_json()
    [rejection] = plan["rejections"]
    assert (rejection["row"], rejection["sku"], rejection["store"], rejection["column"],
            rejection["field"], rejection["value"]) == (
        2, "A-1", "fr", "cost", "pricing cost", "trois cents")
    assert rejection["message"].startswith(
        "row 2 (SKU A-1) [store fr]: pricing cost (column 'cost') is 'trois cents'; expected")
    # The stock still goes; the price is not moved.
    assert updates(plan)["A-1"]["fields"] == {"quantity": {"old": 5, "new": 7}}
    assert "pricing cost 'trois cents' is not" in plan["notices"][0]["message"]


def test_the_kill_switch_sends_the_catalog_price_again(tmp_path: Path,
                                                       emulator: EmulatorServer) -> None:
    shop = make_shop(tmp_path, emulator)
    priced_catalog(shop, [row("A-1", "409.00", "300")])
    shop.run("apply")
    rival(emulator, "A-1", "399.00")
    shop.run("market", "--refresh")
    shop.run("apply")
    assert shop.live("A-1", "fr-fr")["price"] == "398.98"  # type: ignore[index]
    (tmp_path / "mappings" / "default.toml").write_text(
        profile_text(strategy='"win"', margin_share='"5%"', enabled="false"), encoding="utf-8")
    move = updates(shop.plan_json())["A-1"]
    assert move["fields"] == {"price": {"old": "398.98", "new": "409.00"}}
    assert move["pricing"] is None  # the catalog's price, not a move of pricing
    shop.run("apply")
    assert shop.live("A-1", "fr-fr")["price"] == "409.00"  # type: ignore[index]
    # Only pricing's move is kept: the catalog's price is not a move of pricing.
    assert [(old, new) for _, old, new in price_moves(shop)["a-1"]] == [
        (Decimal("409.00"), Decimal("398.98"))]


def test_a_saved_plan_keeps_its_traces_and_its_price_stop(tmp_path: Path,
                                                          emulator: EmulatorServer) -> None:
    shop = make_shop(tmp_path, emulator, max_change_per_run='"50%"', cooldown_minutes="0",
                     max_change_per_day='"100%"')
    skus = [f"S-{i}" for i in range(3)]
    priced_catalog(shop, [row(sku, "400.00", "100") for sku in skus])
    shop.run("apply")
    for sku in skus:
        rival(emulator, sku, "300.00")
    shop.run("market", "--refresh")
    saved = tmp_path / "plan.json"
    shop.run("plan", "--format", "json", "--out", str(saved), code=2)
    plan = json.loads(saved.read_text(encoding="utf-8"))
    assert all(c["pricing"] and c["gain"] for c in plan["changes"])
    result = shop.run("apply", "--plan", str(saved), code=None)
    assert result.exit_code != 0
    assert "would change the price of 3 of 3 live offers" in result.output + result.stderr
    assert {shop.live(sku, "fr-fr")["price"] for sku in skus} == {"400.00"}  # type: ignore[index]
    shop.run("apply", "--plan", str(saved), "--force")
    assert {shop.live(sku, "fr-fr")["price"] for sku in skus} == {"299.98"}  # type: ignore[index]
    assert set(price_moves(shop)) == {"s-0", "s-1", "s-2"}


def test_the_engine_has_one_backpricer_band_and_the_emulator_its_own() -> None:
    from syncer.emulator import changes as emulator
    from syncer.planning import pricing, validation

    assert pricing.BACKPRICER_BAND is validation.BACKPRICER_BAND
    source = Path(pricing.__file__).read_text(encoding="utf-8")
    assigned = [node for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.AnnAssign | ast.Assign)
                and "BACKPRICER_BAND" in ast.unparse(node).split("=")[0]]
    assert assigned == []  # imported, not defined again
    assert emulator.BACKPRICER_BAND == validation.BACKPRICER_BAND  # the same value, its own


def test_a_spilled_change_log_ranks_price_moves_within_each_block_it_writes() -> None:
    target = tuple(None for _ in FIELDS)
    moves = [Change("update", "fr", f"S-{n}", target, (("price", "2.00", "1.00"),),
                    pricing="trace", gain=f"{n}.00") for n in range(30)]
    log = ChangeLog(moves, spill_at=10)  # spills its first 11, then the rest as it is read
    first, rest = list(reversed(range(11))), list(reversed(range(11, 30)))
    assert [c.sku for c in log] == [f"S-{n}" for n in first + rest]
    log.close()


def test_confirmed_moves_are_kept_per_store_and_sku_and_the_old_ones_dropped(
        state_url: str) -> None:
    at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    with StateStore.open(state_url) as state:
        assert state.market.price_moves("fr", at - timedelta(days=1)) == {}  # nothing yet
        state.market.record_price_moves("fr", [("a-1", Decimal("409.00"), Decimal("398.98"))],
                                 at - timedelta(days=40))
        state.market.record_price_moves("de", [("a-1", Decimal("1"), Decimal("2"))], at)
        state.market.record_price_moves("fr", [("a-1", Decimal("398.98"), Decimal("390.00")),
                                        ("b-2", Decimal("10"), Decimal("9.5"))], at)
        assert state.market.price_moves("fr", at - timedelta(days=60)) == {
            "a-1": [(at, Decimal("398.98"), Decimal("390.00"))],  # 40 days old: dropped
            "b-2": [(at, Decimal("10"), Decimal("9.5"))]}
        assert state.market.price_moves("de", at) == {"a-1": [(at, Decimal("1"), Decimal("2"))]}
