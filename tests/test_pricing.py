"""Pricing (syncer/planning/pricing.py): worked examples with their traces, the profile's [pricing]
table, the mass-change guard for prices, the budget order, and properties over any market.

- No decision that moves prices below the floor or above the ceiling, whatever the data.
- A move never exceeds the per-run step, nor the per-day budget; nothing moves in the
  cooldown, with the kill switch, or on stale, missing or foreign data.
- Every min_price the band and backpricer modes send keeps BackPricer's band.
"""

from __future__ import annotations

import ast
import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.config.settings import BUNDLED_MAPPINGS
from syncer.config.stores import StoreSettings
from syncer.core.competition import Competition
from syncer.core.offers import Offer
from syncer.errors import ConfigError, SafetyStop
from syncer.planning import pricing
from syncer.planning.mapping import compile_mapping, load_profile
from syncer.planning.pricing import (
    BACKPRICER_BAND,
    Decision,
    Move,
    RowPricing,
    budget_order,
    budget_rank,
    check_price_moves,
    price_stop,
    priced,
    read_row,
    suggest,
)
from syncer.planning.pricing_rules import PricingRules, Strategy
from tests.conftest import HEADER, catalog_row

D = Decimal
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
OFFER = Offer("fr", 2, "IP13-128-GOOD", None, "1234567890128", "GOOD", 3, D("409.00"), "EUR",
              12)
COSTS = RowPricing(cost=D("300"), shipping=D("8"))
WIN = PricingRules(strategy="win", margin_share=D("0.05"))
FLOOR = "floor 362.36 = (cost 300.00 + shipping 8.00) / (1 - commission 10% - margin 5%)"


def market(price_to_win: str = "399.00", winner: str | None = "399.00", *, minutes: float = 12,
           winning: bool = False, currency: str = "EUR") -> Competition:
    return Competition("8d5ac5a4-0c7e-4b7a-9a53-3f4f0d0c9a11", "FR", currency, D("409.00"),
                       None, D(price_to_win), None if winner is None else D(winner), winning,
                       NOW - timedelta(minutes=minutes))


# --- worked examples --------------------------------------------------------------------------

def test_win_moves_one_step_below_the_price_to_win_and_says_how_the_floor_was_made() -> None:
    decision = suggest(OFFER, market(), WIN, (), NOW, inputs=COSTS)
    assert decision.moved and decision.wins
    assert decision.price == D("398.99")
    assert (decision.floor, decision.ceiling) == (D("362.36"), D("409.00"))
    assert decision.reason == (
        f"price 409.00 → 398.99: win (price to win 399.00, step 0.01); {FLOOR}; "
        "ceiling 409.00 = catalog price; competitor data 12 min old")
    # What a sale then earns: 398.99 less 10% commission, cost and shipping.
    assert decision.gain == D("51.09")


def test_the_floor_divides_by_the_shares_of_the_price_and_rounds_up() -> None:
    # 308 / 0.85 = 362.3529...: rounded up, never down to a price that loses the margin.
    rules = WIN.model_copy(update={"margin_amount": D("5")})
    decision = suggest(OFFER, market(), rules, (), NOW, inputs=COSTS)
    assert decision.floor == D("368.24")  # 313 / 0.85 = 368.2352...
    assert "floor 368.24 = (cost 300.00 + shipping 8.00 + margin 5.00) / (1 - commission " \
        "10% - margin 5%)" in decision.reason


def test_match_takes_the_winner_price() -> None:
    rules = WIN.model_copy(update={"strategy": "match"})
    decision = suggest(OFFER, market("395.00", "397.50"), rules, (), NOW, inputs=COSTS)
    assert decision.price == D("397.50") and decision.moved and not decision.wins
    assert decision.reason.startswith("price 409.00 → 397.50: match (winner price 397.50); ")


def test_a_row_names_its_own_strategy() -> None:
    decision = suggest(OFFER, market("395.00", "397.50"), WIN, (), NOW,
                       inputs=COSTS._replace(strategy="match"))
    assert decision.strategy == "match" and decision.price == D("397.50")


def test_a_competitor_below_our_floor_leads_to_no_move_and_says_why() -> None:
    decision = suggest(OFFER, market("350.00"), WIN, (), NOW, inputs=COSTS)
    assert not decision.moved and decision.price == D("409.00")
    assert decision.reason == ("price 409.00: competitor below our floor 362.36 (price to win "
                               "350.00): no move")


def test_win_takes_the_floor_when_only_the_step_goes_below_it() -> None:
    decision = suggest(OFFER, market("362.36"), WIN, (), NOW, current=D("370.00"),
                       inputs=COSTS)
    assert (decision.price, decision.moved, decision.wins) == (D("362.36"), True, True)
    assert decision.reason.startswith("price 370.00 → 362.36: win (price to win 362.36, step "
                                      "0.01); raised to the floor 362.36; floor 362.36 = ")


def test_a_cooldown_longer_than_a_day_counts_older_moves() -> None:
    rules = WIN.model_copy(update={"cooldown_minutes": 48 * 60})
    history = [Move(NOW - timedelta(hours=30), D("410.00"), D("409.00"))]
    decision = suggest(OFFER, market(), rules, history, NOW, inputs=COSTS)
    assert decision.reason == ("price 409.00: cooldown: last move 30 h ago (min 48 h): "
                               "no move")


def test_stale_competition_data_never_moves_a_price() -> None:
    decision = suggest(OFFER, market(minutes=180), WIN, (), NOW, inputs=COSTS)
    assert not decision.moved
    assert decision.reason == "price 409.00: competition data 3 h old (max 1 h): no move"


def test_missing_competition_data_never_moves_a_price() -> None:
    decision = suggest(OFFER, None, WIN, (), NOW, inputs=COSTS)
    assert (decision.price, decision.moved) == (D("409.00"), False)
    assert decision.reason == "price 409.00: no competition data: no move"


def test_a_move_waits_for_the_cooldown() -> None:
    history = [Move(NOW - timedelta(minutes=20), D("410.00"), D("409.00"))]
    decision = suggest(OFFER, market(), WIN, history, NOW, inputs=COSTS)
    assert not decision.moved
    assert decision.reason == "price 409.00: cooldown: last move 20 min ago (min 1 h): no move"


def test_the_kill_switch_sends_the_catalog_price() -> None:
    rules = WIN.model_copy(update={"enabled": False})
    decision = suggest(OFFER, market(), rules, (), NOW, current=D("398.99"), inputs=COSTS)
    assert (decision.price, decision.moved) == (D("409.00"), False)
    assert decision.reason == ("price 409.00: kill switch ([pricing] enabled = false): the "
                               "catalog price")


def test_the_catalog_strategy_is_todays_behaviour() -> None:
    decision = suggest(OFFER, market(), PricingRules(), (), NOW, current=D("398.99"))
    assert (decision.price, decision.moved, decision.min_price) == (D("409.00"), False, None)
    assert decision.reason == "price 409.00: catalog"


def test_no_floor_no_move() -> None:
    decision = suggest(OFFER, market(), WIN, (), NOW)
    assert decision.reason == ("price 409.00: no floor (map a cost or a floor in "
                               "[pricing.columns]): no move")


def test_a_held_price_is_the_one_last_confirmed() -> None:
    decision = suggest(OFFER, market(minutes=90), WIN, (), NOW, current=D("398.99"),
                       inputs=COSTS)
    assert (decision.price, decision.moved) == (D("398.99"), False)


def test_winning_the_backbox_already_is_no_move() -> None:
    decision = suggest(OFFER, market("398.99", "398.99", winning=True), WIN, (), NOW,
                       current=D("398.99"), inputs=COSTS)
    assert decision.reason == "price 398.99: winning the BackBox: no move"


def test_competition_in_another_currency_is_no_move() -> None:
    decision = suggest(OFFER, market(currency="GBP"), WIN, (), NOW, inputs=COSTS)
    assert decision.reason == ("price 409.00: competition data in GBP, the offer in EUR: "
                               "no move")


def test_match_with_nobody_holding_the_backbox_is_no_move() -> None:
    rules = WIN.model_copy(update={"strategy": "match"})
    decision = suggest(OFFER, market(winner=None), rules, (), NOW, inputs=COSTS)
    assert decision.reason == ("price 409.00: nobody holds the BackBox: nothing to match: "
                               "no move")


def test_a_big_drop_is_cut_to_the_step_of_one_run() -> None:
    decision = suggest(OFFER, market("370.00"), WIN, (), NOW, inputs=COSTS)
    # 5% of 409.00 is 20.45: 388.55 at most this run.
    assert decision.price == D("388.55") and decision.moved and not decision.wins
    assert decision.reason.startswith(
        "price 409.00 → 388.55: win (price to win 370.00, step 0.01); limited to 5% a run "
        "(wanted 369.99); ")


def test_a_price_the_step_cannot_bring_within_its_bounds_is_held() -> None:
    # Below a new floor of 362.36, with a price to win above it: 5% of 300.00 reaches 315.00.
    decision = suggest(OFFER, market("400.00", "400.00"), WIN, (), NOW, current=D("300.00"),
                       inputs=COSTS)
    assert (decision.price, decision.moved) == (D("300.00"), False)
    assert decision.reason == ("price 300.00: the guards let it move only to 315.00 (wanted "
                               "399.99), outside floor 362.36 and ceiling 409.00: no move")


def test_the_day_budget_limits_then_stops_moves() -> None:
    # 15% of 420.00 = 63.00 a day; 11.00 then 0.00 moved already: 52.00 left.
    history = [Move(NOW - timedelta(hours=20), D("420.00"), D("409.00"))]
    rules = WIN.model_copy(update={"max_change_per_run": D("0.20")})
    decision = suggest(OFFER, market("345.00"), rules.model_copy(
        update={"margin_share": D("0")}), history, NOW, inputs=COSTS)
    assert decision.price == D("357.00")
    assert "limited by the day budget (52.00 left of 15% of 420.00)" in decision.reason
    spent = [*history, Move(NOW - timedelta(hours=2), D("409.00"), D("357.00"))]
    decision = suggest(OFFER, market("345.00"), rules.model_copy(
        update={"margin_share": D("0")}), spent, NOW, current=D("357.00"), inputs=COSTS)
    assert not decision.moved
    assert decision.reason == ("price 357.00: day budget spent (15% of 420.00 moved in the "
                               "last 24 h): no move")


def test_moves_older_than_a_day_do_not_count() -> None:
    history = [Move(NOW - timedelta(hours=25), D("480.00"), D("409.00"))]
    decision = suggest(OFFER, market(), WIN, history, NOW, inputs=COSTS)
    assert decision.moved and decision.price == D("398.99")


def test_the_ceiling_caps_a_price_to_win_above_it() -> None:
    offer = OFFER._replace(price=D("380.00"))
    rules = WIN.model_copy(update={"ceiling_share": D("0.02")})
    decision = suggest(offer, market("420.00", "420.00"), rules, (), NOW, current=D("370.00"),
                       inputs=COSTS)
    assert decision.price == D("387.60") and decision.ceiling == D("387.60")
    assert "capped at the ceiling 387.60" in decision.reason
    assert "ceiling 387.60 = catalog price + 2%" in decision.reason


def test_a_catalog_min_price_bounds_the_price_to_its_backpricer_band() -> None:
    offer = OFFER._replace(min_price=D("380.00"))
    decision = suggest(offer, market("370.00"), WIN, (), NOW, inputs=COSTS)
    assert decision.floor == D("380.00") and decision.ceiling == D("409.00")
    assert decision.reason == ("price 409.00: competitor below our floor 380.00 (price to win "
                               "370.00): no move")
    high = OFFER._replace(price=D("420.00"), min_price=D("380.00"))
    decision = suggest(high, market("415.00", "415.00"), WIN, (), NOW, current=D("400.00"),
                       inputs=COSTS)
    assert decision.price == D("410.40")
    assert "ceiling 410.40 = min_price 380.00 x 1.08 (BackPricer band)" in decision.reason
    assert decision.min_price == D("380.00")


def test_band_mode_sends_the_lowest_min_price_the_band_allows_never_under_the_floor() -> None:
    rules = WIN.model_copy(update={"min_price": "band"})
    decision = suggest(OFFER, market(), rules, (), NOW, inputs=COSTS)
    assert decision.min_price == D("369.44")  # 398.99 / 1.08 = 369.435...
    assert decision.reason.endswith("; min_price 369.44 = price / 1.08, rounded up "
                                    "(BackPricer band)")
    cheap = suggest(OFFER, market("375.00"), rules, (), NOW, inputs=COSTS)
    assert cheap.price == D("388.55") and cheap.min_price == D("362.36")
    assert cheap.reason.endswith("; min_price 362.36 = the floor")


def test_backpricer_mode_moves_no_price_and_sends_a_min_price() -> None:
    rules = WIN.model_copy(update={"min_price": "backpricer"})
    decision = suggest(OFFER, market(), rules, (), NOW, current=D("398.99"), inputs=COSTS)
    assert (decision.price, decision.moved) == (D("409.00"), False)
    assert decision.min_price == D("378.71")  # 409 / 1.08 = 378.70...: above the floor
    assert decision.reason == ("price 409.00: the catalog price; BackBox moves are left to "
                               "BackPricer; min_price 378.71 = price / 1.08, rounded up "
                               "(BackPricer band)")


def test_a_bad_pricing_cell_stops_repricing_of_that_offer_only() -> None:
    profile = load_profile(BUNDLED_MAPPINGS / "default.toml")
    header = [*HEADER.split(";"), "cost", "pricing_strategy"]
    store = StoreSettings(name="fr", locale="fr-fr")
    getters = compile_mapping(profile, header, [store]).stores[0].pricing
    cells = catalog_row("A").split(";")
    values = [*cells, "3OO", "win"]
    inputs, problems = read_row(getters, values, row=2, sku="A", store="fr")
    assert [p.message() for p in problems] == [
        "row 2 (SKU A) [store fr]: pricing cost (column 'cost') is '3OO'; expected an amount "
        "like 199.90 (digits, at most 2 decimals, no thousands separator or currency sign)"]
    assert inputs.strategy == "win" and inputs.cost is None
    decision = suggest(OFFER, market(), WIN, (), NOW, inputs=inputs)
    assert decision.reason == ("price 409.00: pricing cost '3OO' is not an amount like 199.90: "
                               "no move")
    good, none = read_row(getters, [*cells, "300,00", ""], row=3, sku="A", store="fr")
    assert none == () and good == RowPricing(cost=D("300.00"))


def test_priced_offer_publishes_the_decided_price_and_min_price() -> None:
    decision = suggest(OFFER, market(), WIN.model_copy(update={"min_price": "band"}), (), NOW,
                       inputs=COSTS)
    offer = priced(OFFER._replace(target=OFFER.compute_published()), decision)
    assert offer.published()[4] == "398.99" and offer.published()[8] == "369.44"
    assert priced(OFFER, suggest(OFFER, None, WIN, (), NOW)) is OFFER


def test_pricing_reads_no_clock_and_does_no_io() -> None:
    # The design's pure stages: time comes in as `now`, data as arguments.
    tree = ast.parse(Path(pricing.__file__).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in (node.names if isinstance(node, ast.Import) else
                              [ast.alias(node.module or "")])}
    assert imported.isdisjoint({"time", "os", "httpx", "sqlalchemy", "socket", "subprocess"})
    called = {node.func.attr if isinstance(node.func, ast.Attribute) else
              getattr(node.func, "id", "") for node in ast.walk(tree)
              if isinstance(node, ast.Call)}
    assert called.isdisjoint({"now", "utcnow", "today", "time", "monotonic", "open",
                              "read_text", "read_bytes", "write_text"})


# --- the profile's [pricing] --------------------------------------------------------------------

def _profile(tmp_path: Path, pricing: str) -> Path:
    text = (BUNDLED_MAPPINGS / "default.toml").read_text(encoding="utf-8")
    head = text.split("\n[pricing]")[0]
    path = tmp_path / "mine.toml"
    path.write_text(head + "\n" + pricing, encoding="utf-8")
    return path


def test_the_default_profile_prices_as_the_catalog_does() -> None:
    pricing = load_profile(BUNDLED_MAPPINGS / "default.toml").pricing
    assert pricing is not None
    rules = pricing.rules("fr")
    assert (rules.enabled, rules.strategy, rules.min_price) == (True, "catalog", "catalog")
    assert rules.commission == D("0.10") and rules.max_change_per_run == D("0.05")
    assert set(pricing.columns) == {"cost", "shipping", "floor", "ceiling", "strategy"}


def test_store_overrides_merge_over_the_profile_rules(tmp_path: Path) -> None:
    path = _profile(tmp_path, '[pricing]\nstrategy = "win"\ncommission = "12%"\n'
                              'margin_share = 0.05\n[pricing.stores.de]\nstrategy = "match"\n'
                              'cooldown_minutes = 30\n')
    pricing = load_profile(path).pricing
    assert pricing is not None
    fr, de = pricing.rules("fr"), pricing.rules("de")
    assert (fr.strategy, fr.commission, fr.margin_share) == ("win", D("0.12"), D("0.05"))
    assert (de.strategy, de.commission, de.cooldown_minutes) == ("match", D("0.12"), 30)


@pytest.mark.parametrize(("pricing", "message"), [
    ('[pricing]\nstrategy = "winn"\n',
     "pricing.strategy: expected 'catalog', 'win' or 'match', got 'winn'"),
    ("[pricing]\nenabled = \"no\"\n", "pricing.enabled: expected true or false, got 'no'"),
    ("[pricing]\ncommission = \"ten\"\n",
     "pricing.commission: expected a number such as 0.10 or \"10%\", got 'ten'"),
    ("[pricing]\ncommision = 0.1\n", "pricing.commision: unknown key"),
    ('[pricing.stores.fr]\nmin_price = "auto"\n',
     "pricing.stores.fr.min_price: expected 'catalog', 'band' or 'backpricer', got 'auto'"),
    ("[pricing]\ncommission = 0.5\nmargin_share = 0.5\n",
     "pricing: commission 50% + margin_share 50% must stay under 100% of the price"),
    ("[pricing.columns]\ncots = \"cost\"\n", "unknown fields ['cots']"),
])
def test_a_wrong_pricing_key_or_type_names_the_file_the_key_and_what_was_expected(
        tmp_path: Path, pricing: str, message: str) -> None:
    path = _profile(tmp_path, pricing)
    with pytest.raises(ConfigError) as error:
        load_profile(path)
    assert str(path) in str(error.value) and message in str(error.value)


# --- the store as a whole ---------------------------------------------------------------------

def _decision(current: str, price: str, *, wins: bool = False, gain: str = "0",
              moved: bool = True, sku: str = "A") -> Decision:
    return Decision("fr", sku, D(price), None, D("1"), D("999"), "", moved, D(current), "win",
                    wins, D(gain))


def test_the_price_guard_stops_a_plan_that_moves_too_many_live_offers_too_far() -> None:
    rules = PricingRules()
    big = [_decision("100.00", "80.00") for _ in range(3)]
    small = [_decision("100.00", "95.00") for _ in range(7)]
    assert price_stop("fr", small + big[:2], 10, rules) is None  # 20%: at the limit
    stop = price_stop("fr", small + big, 10, rules)
    assert stop == ("store fr: the plan would change the price of 3 of 10 live offers by more "
                    "than 10% (30%, limit 20% beyond 1 offer); nothing was sent. Check the "
                    "catalog's prices (a price column in cents, a wrong file?) and the [pricing] "
                    "rules (a cost column, a strategy, max_change_per_run) or rerun with --force")
    with pytest.raises(SafetyStop, match="3 of 10 live offers"):
        check_price_moves("fr", small + big, 10, rules, force=False)
    check_price_moves("fr", small + big, 10, rules, force=True)
    # A small store: one offer is within the allowance; every offer of several is not.
    assert price_stop("fr", big[:1], 2, rules) is None
    assert "that is every live offer" in (price_stop("fr", big[:2], 2, rules) or "")


def test_the_budget_goes_to_backbox_wins_largest_gain_first_then_other_moves() -> None:
    held = _decision("100.00", "100.00", moved=False, sku="held")
    other = _decision("100.00", "96.00", sku="other")
    small = _decision("100.00", "95.00", wins=True, gain="5", sku="small")
    large = _decision("100.00", "95.00", wins=True, gain="40", sku="large")
    assert sorted([held, other, small, large], key=budget_rank) == [large, small, other, held]
    assert budget_rank(None) == budget_rank(held)
    changes = [("stock", 1, None), ("held", 2, held), ("other", 2, other), ("large", 2, large),
               ("zero", 0, None)]
    ordered = budget_order(changes, lambda c: c[1], lambda c: c[2])
    assert [c[0] for c in ordered] == ["zero", "stock", "large", "other", "held"]


# --- properties ---------------------------------------------------------------------------------

def amounts(low: str = "0.01", high: str = "2000") -> st.SearchStrategy[Decimal]:
    return st.decimals(D(low), D(high), places=2)


def sometimes(value: st.SearchStrategy[Any], other: st.SearchStrategy[Any]
              ) -> st.SearchStrategy[Any]:
    """Mostly ``value``, one time in four ``other``: moves stay common among the edge cases."""
    return st.integers(1, 4).flatmap(lambda n: other if n == 4 else value)


CENTS = D("0.01")
# Market amounts near our price (the usual case), else anything finite or not.
extreme = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=True),
    st.sampled_from([D(0), D("-0"), D("-1"), D("1E+30"), D("1E-30"), D("0.0049"),
                     D("399.999999"), D("-Infinity"), D("Infinity")]))
near = st.decimals(D("0.6"), D("1.15"), places=3)


@st.composite
def cases(draw: st.DrawFn, movable: bool = False
          ) -> tuple[Offer, Competition | None, RowPricing, Decimal | None]:
    """An offer, its market, its row's pricing cells and its confirmed price. ``movable``:
    fresh data in the offer's currency and a known cost, so that most examples move."""
    def often(value: st.SearchStrategy[Any], other: st.SearchStrategy[Any]
              ) -> st.SearchStrategy[Any]:
        return value if movable else sometimes(value, other)

    price = draw(amounts("0.01", "2000"))
    low = draw(st.none() | st.decimals(D("0.93"), D(1), places=2))
    offer = OFFER._replace(price=price, min_price=None if low is None else
                           max(CENTS, (price * low).quantize(CENTS)))
    spread = st.decimals(D("0.3"), D("1.6"), places=3) if movable else near
    current = draw(st.none() | spread.map(lambda f: max(CENTS, (price * f).quantize(CENTS))))
    held = price if current is None else current

    def around(factor: Decimal) -> Decimal:
        return (held * factor).quantize(CENTS)

    competition = draw(often(st.builds(
        Competition, st.just("l"), st.just("FR"), often(st.just("EUR"), st.just("GBP")),
        st.just(held), st.none() | near.map(around), sometimes(spread.map(around), extreme),
        sometimes(spread.map(around), st.none() | extreme), often(st.just(False), st.booleans()),
        st.integers(-30, 400).map(lambda m: NOW - timedelta(minutes=m))
        if not movable else st.integers(0, 29).map(lambda m: NOW - timedelta(minutes=m))),
        st.none()))
    inputs = draw(st.builds(
        RowPricing, cost=often(st.decimals(D("0.3"), D("0.85"), places=2).map(around),
                               st.none() | amounts("0", "1500")),
        shipping=st.none() | amounts("0", "30"),
        floor=st.none() | near.map(around),
        ceiling=st.none() | (st.decimals(D("1"), D("1.15"), places=3) if movable else near
                             ).map(around),
        strategy=st.none() | st.sampled_from(["win", "match"] if movable else
                                             ["catalog", "win", "match"]),
        problem=often(st.none(), st.just("pricing cost 'x' is not an amount"))))
    return offer, competition, inputs, current


rules_ = st.builds(
    PricingRules, enabled=sometimes(st.just(True), st.booleans()),
    strategy=sometimes(st.sampled_from(["win", "match"]), st.just("catalog")),
    commission=st.decimals(D(0), D("0.3"), places=2),
    margin_amount=st.decimals(D(0), D(20), places=2),
    margin_share=st.decimals(D(0), D("0.3"), places=2),
    ceiling_share=st.decimals(D(0), D("0.5"), places=2),
    step=st.decimals(D(0), D(5), places=2),
    max_change_per_run=st.decimals(D(0), D("0.5"), places=3),
    max_change_per_day=st.decimals(D(0), D(1), places=3),
    cooldown_minutes=st.sampled_from([0, 30, 60]),
    max_age_minutes=st.sampled_from([30, 60, 240]),
    min_price=sometimes(st.sampled_from(["catalog", "band"]), st.just("backpricer")))
histories = st.lists(st.builds(
    lambda minutes, old, new: Move(NOW - timedelta(minutes=minutes), old, new),
    st.integers(0, 2000), amounts(), amounts()), max_size=4)


movable_rules = rules_.map(lambda r: r.model_copy(update={
    "enabled": True, "strategy": "match" if r.strategy == "match" else "win",
    "min_price": "band" if r.min_price == "band" else "catalog", "ceiling_share": D("0.5"),
    "commission": D(0), "margin_share": D(0), "margin_amount": D(0)}))


def _spent(history: list[Move]) -> tuple[Decimal, Decimal | None]:
    recent = [m for m in history if NOW - timedelta(hours=24) < m.at <= NOW]
    first = min(recent, key=lambda m: m.at).old if recent else None
    return sum((abs(m.new - m.old) for m in recent), D(0)), first


@settings(max_examples=300, deadline=None)
@given(case=cases(), rules=rules_, history=histories)
def test_no_decision_breaks_its_bounds_its_step_or_its_day_budget(
        case: tuple[Offer, Competition | None, RowPricing, Decimal | None],
        rules: PricingRules, history: list[Move]) -> None:
    _check_decision(case, rules, history)


@settings(max_examples=300, deadline=None)
@given(case=cases(movable=True), rules=movable_rules,
       history=sometimes(st.just([]), histories))
def test_no_move_breaks_its_bounds_its_step_or_its_day_budget_whatever_the_market(
        case: tuple[Offer, Competition | None, RowPricing, Decimal | None],
        rules: PricingRules, history: list[Move]) -> None:
    _check_decision(case, rules, history)


def _check_decision(case: tuple[Offer, Competition | None, RowPricing, Decimal | None],
                    rules: PricingRules, history: list[Move]) -> None:
    offer, competition, inputs, current = case
    decision = suggest(offer, competition, rules, history, NOW, current=current,
                       inputs=inputs)
    held = offer.price if current is None else current
    assert decision.current == held
    if not decision.moved:
        assert decision.price in (held, offer.price)
        assert not decision.wins
    else:
        assert decision.floor is not None and decision.ceiling is not None
        assert decision.floor <= decision.price <= decision.ceiling
        assert abs(decision.price - held) <= held * rules.max_change_per_run
        spent, first = _spent(history)
        reference = held if first is None else first
        assert spent + abs(decision.price - held) <= reference * rules.max_change_per_day
        assert rules.enabled and rules.min_price != "backpricer"
        assert competition is not None and not competition.is_winning
        assert timedelta(0) <= competition.age(NOW) <= timedelta(minutes=rules.max_age_minutes)
        if offer.min_price is not None and rules.min_price == "catalog":
            assert offer.min_price <= decision.price <= offer.min_price * BACKPRICER_BAND
    assert decision.price == decision.price.quantize(D("0.01")) and decision.price > 0
    if rules.enabled and rules.min_price != "catalog":
        assert decision.min_price is not None
        assert decision.min_price <= decision.price <= decision.min_price * BACKPRICER_BAND
        if decision.floor is not None and decision.floor <= decision.price:
            assert decision.min_price >= decision.floor


@settings(max_examples=200, deadline=None)
@given(case=cases(), rules=rules_, history=histories, minutes=st.integers(1, 5000))
def test_the_kill_switch_and_stale_data_never_move_a_price(
        case: tuple[Offer, Competition | None, RowPricing, Decimal | None],
        rules: PricingRules, history: list[Move], minutes: int) -> None:
    offer, competition, inputs, current = case
    off = suggest(offer, competition, rules.model_copy(update={"enabled": False}), history,
                  NOW, current=current, inputs=inputs)
    assert (off.price, off.min_price, off.moved) == (offer.price, offer.min_price, False)
    if competition is not None:
        old = dataclasses.replace(competition, read_at=NOW - timedelta(
            minutes=rules.max_age_minutes + minutes))
        stale = suggest(offer._replace(min_price=None), old, rules, history, NOW,
                        current=current, inputs=inputs)
        assert not stale.moved
        assert stale.price == (offer.price if current is None or not rules.enabled
                               or rules.min_price == "backpricer"
                               or (inputs.strategy or rules.strategy) == "catalog"
                               else current)


@settings(max_examples=300, deadline=None)
@given(price=amounts("1", "2000"), cost=st.decimals(D("0.3"), D("0.99"), places=2),
       outside=st.one_of(st.decimals(D("0.3"), D("0.99"), places=2),
                         st.decimals(D("1.01"), D(2), places=2)),
       to_win=st.decimals(D("0.3"), D(3), places=2),
       step=st.decimals(D(0), D("0.5"), places=3),
       strategy=st.sampled_from(["win", "match"]))
def test_a_price_outside_its_bounds_moves_into_them_or_not_at_all(
        price: Decimal, cost: Decimal, outside: Decimal, to_win: Decimal, step: Decimal,
        strategy: Strategy) -> None:
    # A new cost above the price, or a catalog price cut under the one published: the
    # guards let the price go only part of the way.
    rules = PricingRules(strategy=strategy, commission=D(0), max_change_per_run=step,
                         max_change_per_day=D(1), cooldown_minutes=0)
    offer = OFFER._replace(price=price)
    inputs = RowPricing(cost=(price * cost).quantize(CENTS))
    floor, ceiling = inputs.cost, price
    assert floor is not None
    current = ((floor if outside < 1 else ceiling) * outside).quantize(CENTS)
    offered = (current * to_win).quantize(CENTS)
    decision = suggest(offer, market(str(offered), str(offered)), rules, (), NOW,
                       current=max(CENTS, current), inputs=inputs)
    if decision.moved:
        assert floor <= decision.price <= ceiling
        assert abs(decision.price - decision.current) <= decision.current * step
