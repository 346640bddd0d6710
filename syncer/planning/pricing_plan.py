"""Pricing through the plan (issue 15, part 4): each store's offers priced by its rules.

The planner makes one ``StorePricer`` per planned store when the mapping profile has a
``[pricing]`` table. For each catalog row it reads the row's pricing cells (``inputs``: a bad
cell is a rejection naming the row and column, and only stops repricing of that offer); the
diff then asks it for the offer to publish (``price``), knowing the snapshot's entry: the
price last confirmed (``current``) and the listing, whose BackBox read in the store's market
comes from the state (``listing_competition``), with the offer's confirmed price moves
(``price_move``) for the day budget and the cooldown. A move becomes an ordinary ``update``
carrying its trace; an offer losing its BackBox that pricing does not move gets a notice
saying why (a competitor below the floor, stale data, the cooldown...).

``price_stop`` is the mass-change guard for prices over the store's decisions, and
``waiting_note`` says which price moves the hourly SKU budget leaves for a later run.

Also the market view's advisor (``RulesAdvisor``): the same decisions, for `syncer market`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from syncer.core.competition import Competition
from syncer.core.offers import FIELDS, Offer, Rejection, money, visible
from syncer.planning.changes import Change, Notice, StorePlan
from syncer.planning.pricing import (
    DAY,
    Decision,
    Move,
    RowPricing,
    price_stop,
    priced,
    read_row,
    suggest,
)
from syncer.planning.pricing_rules import PricingProfile, PricingRules


class Suggestion(NamedTuple):
    """What pricing says of one offer in one market (``syncer market``). None: not known."""

    price: Decimal | None
    floor: Decimal | None
    ceiling: Decimal | None
    reason: str


if TYPE_CHECKING:
    from syncer.core.snapshot import SnapshotEntry
    from syncer.planning.mapping import CompiledMapping
    from syncer.planning.sources import Getter

PRICE: Final = FIELDS.index("price")
NO_INPUTS: Final = RowPricing()
# Listed by name in the plan's note on what waits for the budget.
SHOWN: Final = 10


def market_code(locale: str) -> str:
    return locale.split("-")[1].upper()


def repricing(rules: PricingRules) -> bool:
    """Whether pricing may move prices at all in a store with these rules (some row may
    still say ``strategy = catalog``)."""
    return rules.enabled and rules.min_price != "backpricer"


def in_effect(rules: PricingRules, row_strategies: bool) -> bool:
    """Whether pricing changes anything in a store: a strategy other than ``catalog`` (the
    store's, or rows' when the catalog has a strategy column), or a min_price it sets. Not
    in effect (the bundled profile's defaults), offers go out as validation made them, as
    without a ``[pricing]`` table."""
    if not rules.enabled:
        return False
    return rules.strategy != "catalog" or rules.min_price != "catalog" or row_strategies


class StorePricer:
    """One store's pricing over a plan (see the module's docstring)."""

    def __init__(self, store: str, market: str, rules: PricingRules,
                 getters: Mapping[str, Getter], competition: Mapping[tuple[str, str],
                                                                     Competition],
                 moves: Mapping[str, Sequence[Move]], now: datetime) -> None:
        self.store = store
        self.market = market
        self.rules = rules
        self.getters = getters
        self.competition = competition
        self.moves = moves
        self.now = now
        # Decisions that change a confirmed price (what the price guard counts).
        self.decisions: list[Decision] = []
        self.notices: list[Notice] = []
        self.moved = 0

    @classmethod
    def for_store(cls, pricing: PricingProfile, store: Any, mapping: CompiledMapping,
                  state: Any, now: datetime) -> StorePricer:
        rules = pricing.rules(store.name)
        getters = next((m.pricing for m in mapping.stores if m.store.name == store.name), {})
        since = now - max(DAY, timedelta(minutes=rules.cooldown_minutes))
        moves = {key: [Move(*move) for move in found]
                 for key, found in state.market.price_moves(store.name, since).items()}
        return cls(store.name, market_code(store.locale), rules, getters,
                   state.market.competition(store.account), moves, now)

    # --- per row ---------------------------------------------------------------------------
    def reprices(self, values: Sequence[str]) -> bool:
        """Whether this row's price here depends on more than the row (its strategy is not
        ``catalog``): the planner's fast path must not take it as unchanged."""
        if not repricing(self.rules):
            return False
        getter = self.getters.get("strategy")
        cell = getter(values) if getter is not None else None
        strategy = (cell or "").strip().casefold() or self.rules.strategy
        return strategy != "catalog"

    def inputs(self, row: int, sku: str, values: Sequence[str]
               ) -> tuple[RowPricing, tuple[Rejection, ...]]:
        if not self.getters:
            return NO_INPUTS, ()
        return read_row(self.getters, values, row=row, sku=sku, store=self.store)

    # --- per offer -------------------------------------------------------------------------
    def decide(self, offer: Offer, inputs: RowPricing | None, entry: SnapshotEntry | None
               ) -> tuple[Decision, Competition | None]:
        current = competition = None
        if entry is not None and entry.published is not None \
                and entry.published[PRICE] is not None:
            current = Decimal(str(entry.published[PRICE]))
        if entry is not None and entry.listing_id:
            competition = self.competition.get((entry.listing_id, self.market))
        decision = suggest(offer, competition, self.rules, self.moves.get(offer.sku_key, ()),
                           self.now, current=current, inputs=inputs or NO_INPUTS)
        return decision, competition

    def price(self, offer: Offer, inputs: Any, entry: SnapshotEntry | None
              ) -> tuple[Offer, str | None, str | None]:
        """The offer to publish, the trace of a move (None: no move), its gain if it wins."""
        decision, competition = self.decide(offer, inputs, entry)
        if entry is not None and entry.published is not None \
                and decision.price != decision.current:
            self.decisions.append(decision)
        if not decision.moved:
            if (competition is not None and not competition.is_winning
                    and decision.strategy != "catalog" and repricing(self.rules)
                    and offer.quantity > 0):
                self.notices.append(Notice("price-held", self.store, offer.sku,
                                           f"BackBox lost, price not moved: "
                                           f"{decision.reason}"))
            return priced(offer, decision), None, None
        self.moved += 1
        gain = money(decision.gain) if decision.wins else None
        return priced(offer, decision), decision.reason, gain

    # --- the store as a whole --------------------------------------------------------------
    def stop(self, live: int) -> str | None:
        return price_stop(self.store, self.decisions, live, self.rules)

    def finish(self, plan: StorePlan) -> None:
        """Adds the notices and the price guard's stop to the store's plan."""
        plan.notices.extend(self.notices)
        plan.price_stop = self.stop(plan.live)
        if plan.price_stop:
            plan.safety_stop = plan.price_stop if not plan.safety_stop else \
                f"{plan.safety_stop} Also: {plan.price_stop}"


def waiting_note(plans: Iterable[StorePlan], accounts: Mapping[str, str],
                 lines_per_hour: int, used: Mapping[str, int]) -> list[str]:
    """What the hourly SKU budget leaves for a later run, per store, when price moves are
    among it. ``accounts``: store -> budget key; ``used``: budget key -> lines used in the
    last hour. Changes spend the budget in sending order, store after store."""
    if lines_per_hour <= 0:
        return []
    left = {key: max(0, lines_per_hour - spent) for key, spent in used.items()}
    notes = []
    for plan in plans:
        key = accounts[plan.store]
        room = left.get(key, lines_per_hour)
        waiting: list[Change] = []
        total = 0
        for number, change in enumerate(plan.changes):
            if number >= room:
                total += 1
                if change.pricing is not None:
                    waiting.append(change)
        left[key] = max(0, room - len(plan.changes))
        if not waiting:
            continue
        shown = ", ".join(visible(c.sku) for c in waiting[:SHOWN])
        more = f" and {len(waiting) - SHOWN} more" if len(waiting) > SHOWN else ""
        notes.append(
            f"store {plan.store}: the hourly budget of {lines_per_hour} SKU lines "
            f"({used.get(key, 0)} used in the last hour) leaves {total} of "
            f"{len(plan.changes)} changes for a later run; {len(waiting)} of them are price "
            f"moves, which wait: {shown}{more} (zeros and stock go first, then moves that "
            "win a BackBox, largest gain first)")
    return notes


class PlanPricing:
    """The pricers of a plan's stores, as the planner calls them (none: no ``[pricing]``)."""

    def __init__(self, profile: Any, stores: Sequence[Any], mapping: CompiledMapping,
                 state: Any, settings: Any, now: datetime) -> None:
        self.settings = settings
        self.state = state
        self.pricers: dict[str, StorePricer] = {}
        if profile.pricing is not None:
            for store in stores:
                getters = next((m.pricing for m in mapping.stores
                                if m.store.name == store.name), {})
                strategy = getters.get("strategy")
                if in_effect(profile.pricing.rules(store.name),
                             strategy is not None and strategy.index is not None):
                    self.pricers[store.name] = StorePricer.for_store(
                        profile.pricing, store, mapping, state, now)
        # The fast path asks these of every row it would skip.
        self.repricing = [p for p in self.pricers.values() if repricing(p.rules)]

    def __bool__(self) -> bool:
        return bool(self.pricers)

    def attach(self, differs: Mapping[str, Any]) -> None:
        for name, pricer in self.pricers.items():
            differs[name].pricer = pricer

    def reprices(self, values: Sequence[str]) -> bool:
        return any(p.reprices(values) for p in self.repricing)

    def inputs(self, offer: Offer, values: Sequence[str], rejections: list[Rejection]
               ) -> RowPricing | None:
        pricer = self.pricers.get(offer.store)
        if pricer is None:
            return None
        inputs, problems = pricer.inputs(offer.row, offer.sku, values)
        rejections.extend(problems)
        return inputs

    def finish(self, plan: StorePlan) -> None:
        pricer = self.pricers.get(plan.store)
        if pricer is not None:
            pricer.finish(plan)

    def notes(self, plans: Sequence[StorePlan]) -> list[str]:
        if not any(p.moved for p in self.pricers.values()):
            return []
        keys = {p.store: self.settings.store(p.store).budget_key for p in plans}
        used = {key: self.state.budget.used(key) for key in set(keys.values())}
        return waiting_note(plans, keys, self.settings.limits.sku_lines_per_hour, used)


class RulesAdvisor:
    """The market view's advisor for a store with pricing rules: the plan's decision for the
    offer (its floor, ceiling, suggested price and why), from the row's pricing cells, the
    price last confirmed and the offer's moves."""

    def __init__(self, rules: PricingRules, inputs: Mapping[str, RowPricing],
                 current: Mapping[str, Decimal], moves: Mapping[str, Sequence[Move]],
                 now: datetime) -> None:
        self.rules = rules
        self.inputs = inputs
        self.current = current
        self.moves = moves
        self.now = now

    def suggest(self, offer: Offer, competition: Competition | None) -> Suggestion:
        key = offer.sku_key
        decision = suggest(offer, competition, self.rules, self.moves.get(key, ()), self.now,
                           current=self.current.get(key), inputs=self.inputs.get(key))
        return Suggestion(decision.price, decision.floor, decision.ceiling, decision.reason)


__all__ = ["PlanPricing", "RulesAdvisor", "StorePricer", "in_effect", "repricing",
           "waiting_note"]
