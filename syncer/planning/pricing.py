"""Pricing: what one offer's price should be, given the market, the seller's rules and limits.

Pure: no I/O and no clock (``now`` is a parameter). The seam the market view and the planner
call, one offer of one store at a time::

    decision = suggest(offer, competition, rules, history, now,
                       current=published_price, inputs=row_pricing)
    decision.price, decision.floor, decision.ceiling, decision.min_price
    decision.reason   # the trace: "price 409.00 → 398.99: win (price to win 399.00, ...)"
    decision.moved    # True only when the strategy moved the price from ``current``

- ``offer``: the valid offer as validation made it (its ``price`` is the catalog's).
- ``competition``: the last BackBox read of its listing in the store's market, or None.
- ``rules``: the store's ``PricingRules`` (``PricingProfile.rules(store)``, from the mapping
  profile's ``[pricing]`` table and its ``[pricing.stores.<name>]`` overrides: see
  ``syncer.planning.pricing_rules``).
- ``history``: the offer's price moves, ``Move(at, old, new)``; those of the last 24 h count.
- ``current``: the price last confirmed in this store (the snapshot's); None for a new offer.
- ``inputs``: the row's pricing cells (``read_row``: cost, shipping, floor, ceiling,
  strategy), from the profile's ``[pricing.columns]``.

Floor and ceiling, rounded to the cent knowingly (the floor up, the ceiling down):

- floor = (cost + shipping + margin_amount) / (1 - commission - margin_share): Back Market's
  commission and a margin share are shares of the *selling* price, so they divide, they do
  not add (10% of 300 on top of 300 would be 10% of the cost, not of the price). A floor
  column (the seller's own minimum) counts too: the higher of the two is the floor.
- ceiling = the lowest of a ceiling column and the catalog price x (1 + ceiling_share)
  (``ceiling_share = 0``, the default: never above the catalog's price).
- with ``min_price = "catalog"``, a catalog min_price narrows both to Back Market's
  BackPricer band: min_price <= price <= min_price x 1.08 (INVALID_BACKPRICER_RANGE else).

A move lands within [floor, ceiling], within ``max_change_per_run`` of ``current`` and within
what is left of ``max_change_per_day`` (the sum of the moves of the last 24 h), or does not
happen. Nothing moves without a floor, with the kill switch (``enabled = false``: the catalog
price goes out), with no competition data, data older than ``max_age_minutes`` or in another
currency, while the offer already holds the BackBox, below the floor, or within the cooldown.

``price_stop`` is the mass-change guard for prices (like ``StorePlan.zero_stop`` for zeros)
and ``budget_rank`` orders price moves for the hourly SKU budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

from syncer.core.competition import Competition
from syncer.core.offers import BACKPRICER_BAND, CENT, Offer, Rejection
from syncer.errors import SafetyStop
from syncer.planning.cells import BadValue, parse_amount
from syncer.planning.pricing_rules import (
    PRICING_COLUMNS,
    STRATEGIES,
    ZERO,
    PricingRules,
    Strategy,
    share_text,
)

if TYPE_CHECKING:
    from syncer.planning.sources import Getter

# Amounts beyond what a catalog cell may hold (9 digits) are not market data we act on.
MAX_AMOUNT: Final = Decimal("999999999.99")
DAY: Final = timedelta(hours=24)


# --- a row's pricing cells ------------------------------------------------------------------

class RowPricing(NamedTuple):
    """What one catalog row says about pricing, for one store. ``problem``: a cell that could
    not be read (the offer itself is not blocked: its price is then not moved)."""

    cost: Decimal | None = None
    shipping: Decimal | None = None
    floor: Decimal | None = None
    ceiling: Decimal | None = None
    strategy: Strategy | None = None
    problem: str | None = None


def read_row(getters: Mapping[str, Getter], values: Sequence[str], *, row: int, sku: str,
             store: str) -> tuple[RowPricing, tuple[Rejection, ...]]:
    """A row's pricing cells for one store (``StoreMapping.pricing`` getters). A bad cell is
    reported as a rejection of that field, and only stops repricing of the offer: bad cost
    data must not block a stock change."""
    found: dict[str, Any] = {}
    problems: list[Rejection] = []
    for name in PRICING_COLUMNS:
        getter = getters.get(name)
        text = getter(values) if getter is not None else None
        if text is None:
            continue
        try:
            if name == "strategy":
                strategy = text.strip().casefold()
                if strategy not in STRATEGIES:
                    raise BadValue("a pricing strategy: catalog, win or match (empty: the "
                                   "store's)")
                found[name] = strategy
            else:
                found[name] = parse_amount(text, positive=name in ("floor", "ceiling"))
        except BadValue as exc:
            problems.append(Rejection(row, sku, f"pricing {name}", text, exc.expected, store,
                                      getter.column if getter is not None else None))
    problem = None
    if problems:
        first = problems[0]
        problem = f"{first.field} {first.value!r} is not {first.expected.split(' (')[0]}"
    return RowPricing(**found, problem=problem), tuple(problems)


# --- the decision ----------------------------------------------------------------------------

class Move(NamedTuple):
    """One price move of one offer in one store, as confirmed: when, from, to."""

    at: datetime
    old: Decimal
    new: Decimal


@dataclass(frozen=True, slots=True)
class Decision:
    """What pricing says for one offer: the price and min_price to publish, the bounds it
    was held to, and why (``reason``, the trace shown in plans and market views)."""

    store: str
    sku: str
    price: Decimal
    min_price: Decimal | None
    floor: Decimal | None
    ceiling: Decimal | None
    reason: str
    moved: bool
    current: Decimal  # the price before (confirmed, else the catalog's)
    strategy: Strategy
    # The move reaches the price to win the BackBox, and what a sale then earns (price less
    # commission, cost and shipping; or the margin above the floor when no cost is known).
    wins: bool = False
    gain: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Bounds:
    floor: Decimal | None
    ceiling: Decimal | None
    floor_trace: str
    ceiling_trace: str

    def trace(self) -> str:
        return "; ".join(t for t in (self.floor_trace, self.ceiling_trace) if t)


def bounds(offer: Offer, inputs: RowPricing, rules: PricingRules) -> Bounds:
    """The offer's floor (rounded up to the cent) and ceiling (rounded down), with how each
    was made."""
    floor: Decimal | None = None
    floor_trace = ""
    if inputs.cost is not None:
        costs = inputs.cost + (inputs.shipping or ZERO) + rules.margin_amount
        shares = rules.commission + rules.margin_share
        floor = _up(costs / (1 - shares))
        terms = [f"cost {_amount(inputs.cost)}"]
        if inputs.shipping:
            terms.append(f"shipping {_amount(inputs.shipping)}")
        if rules.margin_amount:
            terms.append(f"margin {_amount(rules.margin_amount)}")
        parts = [f"commission {share_text(rules.commission)}"] if rules.commission else []
        if rules.margin_share:
            parts.append(f"margin {share_text(rules.margin_share)}")
        if parts:
            numerator = " + ".join(terms)
            if len(terms) > 1:
                numerator = f"({numerator})"
            floor_trace = f"floor {_amount(floor)} = {numerator} / (1 - {' - '.join(parts)})"
        else:
            floor_trace = f"floor {_amount(floor)} = " + " + ".join(terms)
    if inputs.floor is not None and (floor is None or inputs.floor > floor):
        floor = _up(inputs.floor)
        floor_trace = f"floor {_amount(floor)} from the catalog"
    ceiling = _down(offer.price * (1 + rules.ceiling_share))
    ceiling_trace = f"ceiling {_amount(ceiling)} = catalog price" + (
        f" + {share_text(rules.ceiling_share)}" if rules.ceiling_share else "")
    if inputs.ceiling is not None and inputs.ceiling < ceiling:
        ceiling = _down(inputs.ceiling)
        ceiling_trace = f"ceiling {_amount(ceiling)} from the catalog"
    if rules.min_price == "catalog" and offer.min_price is not None:
        if floor is None or offer.min_price > floor:
            floor = _up(offer.min_price)
            floor_trace = f"floor {_amount(floor)} = min_price (BackPricer band)"
        top = _down(offer.min_price * BACKPRICER_BAND)
        if top < ceiling:
            ceiling = top
            ceiling_trace = (f"ceiling {_amount(ceiling)} = min_price "
                             f"{_amount(offer.min_price)} x {BACKPRICER_BAND} (BackPricer band)")
    return Bounds(floor, ceiling, floor_trace, ceiling_trace)


def suggest(offer: Offer, competition: Competition | None, rules: PricingRules,
            history: Sequence[Move], now: datetime, *, current: Decimal | None = None,
            inputs: RowPricing | None = None) -> Decision:
    """The price one offer should have at ``now``, and why. See the module's docstring."""
    inputs = inputs or RowPricing()
    catalog = offer.price
    held = catalog if current is None else current
    strategy: Strategy = inputs.strategy or rules.strategy
    limits = bounds(offer, inputs, rules)
    floor, ceiling = limits.floor, limits.ceiling

    def decide(price: Decimal, reason: str, moved: bool = False, wins: bool = False
               ) -> Decision:
        return _settle(offer, rules, Decision(
            offer.store, offer.sku, price, offer.min_price, floor, ceiling, reason, moved,
            held, strategy, wins, _gain(price, floor, inputs, rules) if wins else ZERO))

    def hold(why: str) -> Decision:
        return decide(held, f"price {_amount(held)}: {why}: no move")

    if not rules.enabled:
        return decide(catalog, f"price {_amount(catalog)}: kill switch ([pricing] enabled = "
                               "false): the catalog price")
    if rules.min_price == "backpricer":
        return decide(catalog, f"price {_amount(catalog)}: the catalog price; BackBox moves "
                               "are left to BackPricer")
    if strategy == "catalog":
        return decide(catalog, f"price {_amount(catalog)}: catalog")
    if inputs.problem:
        return hold(inputs.problem)
    if floor is None:
        return hold("no floor (map a cost or a floor in [pricing.columns])")
    if ceiling is not None and floor > ceiling:
        return hold(f"floor {_amount(floor)} above ceiling {_amount(ceiling)}")
    if competition is None:
        return hold("no competition data")
    if competition.currency.upper() != offer.currency.upper():
        return hold(f"competition data in {competition.currency}, the offer in "
                    f"{offer.currency}")
    age = competition.age(now)
    limit = timedelta(minutes=rules.max_age_minutes)
    if age < timedelta(0):
        return hold(f"competition data read {_duration(-age)} after now")
    if age > limit:
        return hold(f"competition data {_duration(age)} old (max {_duration(limit)})")
    seen = f"competitor data {_duration(age)} old"
    if not _usable(competition.price_to_win):
        return hold(f"competition data unusable (price to win {competition.price_to_win})")
    if competition.is_winning:
        return hold("winning the BackBox")
    to_win = competition.price_to_win
    if strategy == "win":
        target = _down(to_win - rules.step)
        basis = f"price to win {_amount(to_win)}"
        how = f"win ({basis}, step {_amount(rules.step)})"
    else:
        winner = competition.winner_price
        if winner is None:
            return hold("nobody holds the BackBox: nothing to match")
        if not _usable(winner):
            return hold(f"competition data unusable (winner price {winner})")
        target = _down(winner)
        basis = f"winner price {_amount(winner)}"
        how = f"match ({basis})"
    notes = []
    if strategy == "win" and target < floor <= to_win:
        target = floor  # the floor still wins: the step is what gives way
        notes.append(f"raised to the floor {_amount(floor)}")
    if target < floor:
        return hold(f"competitor below our floor {_amount(floor)} ({basis})")
    if ceiling is not None and target > ceiling:
        target = ceiling
        notes.append(f"capped at the ceiling {_amount(ceiling)}")
    if target == held:
        return hold(f"already at the {strategy} price ({basis})")
    recent = [m for m in history if now - DAY < m.at <= now]
    past = [m.at for m in history if m.at <= now]
    if past and rules.cooldown_minutes:
        last = max(past)
        wait = timedelta(minutes=rules.cooldown_minutes)
        if now - last < wait:
            return hold(f"cooldown: last move {_duration(now - last)} ago "
                        f"(min {_duration(wait)})")
    wanted = target
    step = held * rules.max_change_per_run
    target = _within(target, held, step)
    if target != wanted:
        notes.append(f"limited to {share_text(rules.max_change_per_run)} a run (wanted "
                     f"{_amount(wanted)})")
    reference = min(recent, key=lambda m: m.at).old if recent else held
    budget = reference * rules.max_change_per_day
    left = budget - sum((abs(m.new - m.old) for m in recent), ZERO)
    if left < CENT:
        return hold(f"day budget spent ({share_text(rules.max_change_per_day)} of "
                    f"{_amount(reference)} moved in the last 24 h)")
    limited = _within(target, held, left)
    if limited != target:
        notes.append(f"limited by the day budget ({_amount(_down(left))} left of "
                     f"{share_text(rules.max_change_per_day)} of {_amount(reference)})")
        target = limited
    if target == held:
        return hold(f"{share_text(rules.max_change_per_run)} of {_amount(held)} is under a cent")
    if target < floor or (ceiling is not None and target > ceiling):
        # The price is far outside its bounds (a new cost, a lower catalog price): the
        # guards let it go only part of the way, which would still be outside.
        return hold(f"the guards let it move only to {_amount(target)} (wanted "
                    f"{_amount(wanted)}), outside floor {_amount(floor)} and ceiling "
                    f"{_amount(ceiling) if ceiling is not None else 'none'}")
    trace = "; ".join([f"price {_amount(held)} → {_amount(target)}: {how}", *notes,
                       limits.trace(), seen])
    return decide(target, trace, moved=True, wins=target <= to_win)


def _settle(offer: Offer, rules: PricingRules, decision: Decision) -> Decision:
    """The min_price that goes with the decided price, per ``rules.min_price``, so that the
    pair always keeps BackPricer's band."""
    price = decision.price
    if not rules.enabled or rules.min_price == "catalog":
        low = offer.min_price
        if low is None or low <= price <= low * BACKPRICER_BAND or price == offer.price:
            return decision
        # A held price the catalog's (new) min_price no longer allows: the catalog's price,
        # which validation checked against that band.
        return _replace(decision, price=offer.price, moved=False, wins=False, gain=ZERO,
                        reason=f"price {_amount(offer.price)}: the held price "
                               f"{_amount(price)} is outside the BackPricer band of "
                               f"min_price {_amount(low)}: the catalog price")
    lowest = _up(price / BACKPRICER_BAND)
    floor = decision.floor
    low = floor if floor is not None and lowest < floor <= price else lowest
    why = (f"min_price {_amount(low)}" + (" = the floor" if low == floor else
           f" = price / {BACKPRICER_BAND}, rounded up (BackPricer band)"))
    if floor is not None and floor > price:
        why += f"; the price is below the floor {_amount(floor)}"
    return _replace(decision, min_price=low, reason=f"{decision.reason}; {why}")


def _replace(decision: Decision, **changes: Any) -> Decision:
    fields = {name: getattr(decision, name) for name in Decision.__slots__}
    fields.update(changes)
    return Decision(**fields)


def priced(offer: Offer, decision: Decision) -> Offer:
    """The offer as it should be published after the decision (its published fields are
    computed again: validation's are for the catalog price)."""
    if decision.price == offer.price and decision.min_price == offer.min_price:
        return offer
    return offer._replace(price=decision.price, min_price=decision.min_price, target=None)


def _gain(price: Decimal, floor: Decimal | None, inputs: RowPricing, rules: PricingRules
          ) -> Decimal:
    if inputs.cost is not None:
        return _down(price * (1 - rules.commission) - inputs.cost - (inputs.shipping or ZERO))
    return price - floor if floor is not None else ZERO


# --- the store as a whole ------------------------------------------------------------------

def price_stop(store: str, decisions: Iterable[Decision], live: int, rules: PricingRules
               ) -> str | None:
    """Why this store's plan must not be applied without --force, or None: the mass-change
    guard (invariant 5) for prices. It stops when more live offers would change price by more
    than ``mass_change_move`` than both ``mass_change_share`` of the live offers and
    ``mass_change_allowance`` let through, or when every live offer of a store that has
    several would. Counts every price change a decision makes, by the strategy or the
    catalog: a price column read in cents moves the whole shop too."""
    big = sum(1 for d in decisions if d.current > 0
              and abs(d.price - d.current) > d.current * rules.mass_change_move)
    if not big:
        return None
    share = Decimal(big) / live if live else Decimal(1)
    whole_store = live > 1 and big >= live
    allowance = rules.mass_change_allowance
    if not whole_store and (big <= allowance or share <= rules.mass_change_share):
        return None
    plural = "s" if allowance != 1 else ""
    every = "; that is every live offer" if whole_store else ""
    return (f"store {store}: the plan would change the price of {big} of {live} live offers "
            f"by more than {share_text(rules.mass_change_move)} ({share:.0%}, limit "
            f"{share_text(rules.mass_change_share)} beyond {allowance} offer{plural}{every}); "
            "nothing was sent. Check the catalog's prices (a price column in cents, a wrong "
            "file?) and the [pricing] rules (a cost column, a strategy, max_change_per_run) "
            "or rerun with --force")


def check_price_moves(store: str, decisions: Iterable[Decision], live: int,
                      rules: PricingRules, force: bool) -> None:
    """``price_stop`` as the apply path uses it: raises ``SafetyStop`` unless forced."""
    if force:
        return
    stop = price_stop(store, decisions, live, rules)
    if stop is not None:
        raise SafetyStop(stop)


def budget_rank(decision: Decision | None) -> tuple[int, Decimal]:
    """Sort key of price changes competing for the hourly SKU budget, within one priority of
    ``Change.priority`` (zeros and stock changes stay first): moves that win a BackBox,
    largest expected gain first, then the other moves, then changes no move made."""
    if decision is None or not decision.moved:
        return (2, ZERO)
    if decision.wins:
        return (0, -decision.gain)
    return (1, ZERO)


T = TypeVar("T")


def budget_order(items: Iterable[T], priority: Callable[[T], int],
                 decision: Callable[[T], Decision | None]) -> list[T]:
    """Items (plan changes) in the order they should spend the budget: by ``priority``, then
    ``budget_rank``; stable otherwise."""
    return sorted(items, key=lambda item: (priority(item), budget_rank(decision(item))))


# --- numbers and words -----------------------------------------------------------------------

def _usable(value: Decimal) -> bool:
    return value.is_finite() and ZERO < value <= MAX_AMOUNT


def _within(target: Decimal, around: Decimal, reach: Decimal) -> Decimal:
    """``target`` moved at most ``reach`` from ``around``, rounded towards ``around``."""
    low, high = _up(around - reach), _down(around + reach)
    return max(low, min(high, target)) if low <= high else around


def _up(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_CEILING)


def _down(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_FLOOR)


def _amount(value: Decimal) -> str:
    return f"{value.quantize(CENT):f}"


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


__all__ = [
    "BACKPRICER_BAND", "Bounds", "Decision", "Move", "RowPricing", "bounds", "budget_order",
    "budget_rank", "check_price_moves", "price_stop", "priced", "read_row", "suggest",
]
