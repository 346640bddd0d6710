"""The diff, a pure function: rules pinned by examples, invariants by properties."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.core.offers import FIELDS, Offer
from syncer.core.snapshot import SnapshotEntry
from syncer.planning.changes import StorePlan
from syncer.planning.diff import diff

Q = FIELDS.index("quantity")


def offer(sku: str, *, quantity: int = 5, price: str = "100.00", comment: str | None = None,
          grade: str = "GOOD", row: int = 2) -> Offer:
    return Offer(store="fr", row=row, sku=sku, product_id=None, ean="4006381333931",
                 grade=grade, quantity=quantity, price=Decimal(price), currency="EUR",
                 warranty_delay=12, comment=comment)


def live(o: Offer, *, status: str = "live", error: str | None = None) -> SnapshotEntry:
    return SnapshotEntry(sku=o.sku, listing_id=f"id-{o.sku}", published=o.published(),
                         status=status, last_error=error)


def plan_of(offers: list[Offer], snapshot: dict[str, SnapshotEntry],
            rejected: tuple[str, ...] = (), elsewhere: frozenset[str] = frozenset()
            ) -> StorePlan:
    return diff("fr", "fr-fr", offers, rejected, snapshot,
                listed_elsewhere=lambda key: key in elsewhere)


def actions(plan: StorePlan) -> dict[str, str]:
    return {c.sku: c.action for c in plan.changes}


def test_new_offer_is_created_with_all_its_fields() -> None:
    plan = plan_of([offer("A")], {})
    (change,) = plan.changes
    assert change.action == "create"
    assert change.changes is None  # a new offer: every field is new
    assert dict((n, new) for n, _, new in change.field_changes)["price"] == "100.00"


def test_changed_price_is_an_update_naming_old_and_new() -> None:
    old = offer("A", price="100.00")
    plan = plan_of([offer("A", price="95.50")], {"a": live(old)})
    (change,) = plan.changes
    assert change.action == "update"
    assert change.changes == (("price", "100.00", "95.50"),)
    assert change.listing_id == "id-A"
    assert "price '100.00' → '95.50'" in change.reason()


def test_unchanged_offer_is_only_counted() -> None:
    o = offer("A")
    plan = plan_of([o], {"a": live(o)})
    assert plan.changes == [] and plan.unchanged == 1


def test_disappeared_offer_is_zeroed_once() -> None:
    o = offer("A", quantity=4)
    first = plan_of([], {"a": live(o)})
    (change,) = first.changes
    assert change.action == "zero" and change.target[Q] == 0
    zeroed = SnapshotEntry(sku="A", listing_id="id-A", published=change.target, status="live")
    assert plan_of([], {"a": zeroed}).changes == []


def test_rejected_row_is_never_zeroed() -> None:
    plan = plan_of([], {"a": live(offer("A"))}, rejected=("a",))
    assert plan.changes == []
    assert [n.kind for n in plan.notices] == ["kept-rejected"]


def test_sku_dropped_from_one_store_but_listed_in_another_is_reported_not_zeroed() -> None:
    plan = plan_of([], {"a": live(offer("A"))}, elsewhere=frozenset({"a"}))
    assert plan.changes == []
    assert plan.notices[0].kind == "dropped-from-store"


def test_offer_that_failed_last_time_is_retried() -> None:
    o = offer("A")
    entry = SnapshotEntry(sku="A", listing_id=None, published=None, status="failed",
                          last_error="grade unknown")
    (change,) = plan_of([o], {"a": entry}).changes
    assert change.action == "retry" and change.previous_error == "grade unknown"
    assert "failed last time (grade unknown)" in change.reason()


def test_failed_update_is_retried_with_its_changed_fields() -> None:
    old = offer("A", price="100.00")
    plan = plan_of([offer("A", price="90.00")], {"a": live(old, status="failed", error="x")})
    (change,) = plan.changes
    assert change.action == "retry" and change.changed_fields == ("price",)


def test_sku_matching_ignores_case() -> None:
    old = offer("abc-1")
    plan = plan_of([offer("ABC-1")], {"abc-1": live(old)})
    assert plan.changes == [] and plan.unchanged == 1


def test_zeros_come_first_then_stock_changes() -> None:
    snapshot = {"z": live(offer("Z")), "p": live(offer("P")), "s": live(offer("S"))}
    plan = plan_of([offer("P", price="1.00"), offer("S", quantity=1), offer("N")], snapshot)
    assert [c.sku for c in plan.changes] == ["Z", "S", "P", "N"]


def test_zero_share_counts_live_offers_only() -> None:
    snapshot = {k: live(offer(k.upper())) for k in "abcd"}
    snapshot["e"] = live(offer("E", quantity=0))
    plan = plan_of([offer("A"), offer("B"), offer("C")], snapshot)
    assert plan.live == 4 and plan.count("zero") == 1
    assert plan.zero_share() == 0.25


# --- properties -------------------------------------------------------------------------------

skus = st.sampled_from([f"SKU-{i}" for i in range(12)] + [f"sku-{i}" for i in range(3)])
offers_st = st.builds(
    offer, skus, quantity=st.integers(0, 5),
    price=st.sampled_from(["10.00", "12.50", "99.99"]),
    comment=st.sampled_from([None, "ok", "Très bon"]),
    grade=st.sampled_from(["GOOD", "FAIR"]))


def unique(offers: list[Offer]) -> list[Offer]:
    seen: dict[str, Offer] = {}
    for o in offers:
        seen.setdefault(o.sku_key, o)
    return list(seen.values())


def snapshot_st() -> st.SearchStrategy[dict[str, SnapshotEntry]]:
    entry = st.builds(
        lambda o, status: SnapshotEntry(sku=o.sku, listing_id="id", published=(
            None if status == "never" else o.published()),
            status="failed" if status in ("failed", "never") else "live"),
        offers_st, st.sampled_from(["live", "live", "failed", "never"]))
    return st.lists(entry, max_size=10).map(lambda es: {e.sku.casefold(): e for e in es})


def apply_all(plan: StorePlan, snapshot: dict[str, SnapshotEntry]) -> dict[str, SnapshotEntry]:
    """What a fully successful publication leaves in the snapshot."""
    after = dict(snapshot)
    for change in plan.changes:
        after[change.key] = SnapshotEntry(sku=change.sku, listing_id="id",
                                          published=change.target, status="live")
    return after


@settings(max_examples=300, deadline=None)
@given(st.lists(offers_st, max_size=12).map(unique), snapshot_st(),
       st.sets(st.sampled_from([f"sku-{i}" for i in range(12)])))
def test_after_applying_a_plan_the_same_catalog_plans_no_change(
        offers: list[Offer], snapshot: dict[str, SnapshotEntry], rejected: set[str]) -> None:
    rejected -= {o.sku_key for o in offers}
    first = plan_of(offers, snapshot, tuple(rejected))
    second = plan_of(offers, apply_all(first, snapshot), tuple(rejected))
    assert second.changes == []


@settings(max_examples=300, deadline=None)
@given(st.lists(offers_st, max_size=12).map(unique), snapshot_st(),
       st.sets(st.sampled_from([f"sku-{i}" for i in range(12)])))
def test_a_rejected_row_never_becomes_a_zero(
        offers: list[Offer], snapshot: dict[str, SnapshotEntry], rejected: set[str]) -> None:
    rejected -= {o.sku_key for o in offers}
    plan = plan_of(offers, snapshot, tuple(rejected))
    zeroed = {c.key for c in plan.changes if c.action == "zero"}
    assert not zeroed & rejected
    for change in plan.changes:
        if change.action == "zero":
            entry = snapshot[change.key]
            assert entry.published is not None and entry.published[Q] > 0


@settings(max_examples=200, deadline=None)
@given(st.lists(offers_st, max_size=12).map(unique), snapshot_st())
def test_every_catalog_offer_is_counted_exactly_once(
        offers: list[Offer], snapshot: dict[str, SnapshotEntry]) -> None:
    plan = plan_of(offers, snapshot)
    non_zero = [c for c in plan.changes if c.action != "zero"]
    assert len(non_zero) + plan.unchanged == len(offers)


