"""What a first plan (every offer a create) runs through, made cheaper, gives what it gave:

- validation's plain path (``Validator._validate_plain``: rows with nothing to report, read
  with fewer calls and with the cell texts of each store remembered) gives exactly what full
  validation gives, row by row, whatever the cells: the same offers (to the Decimal's
  exponent), the same rejections, the same stores listed, rejected and unpriced;
- a change log that spills (creates written as their fields that vary) reads back the
  changes one held in memory gives, in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.config.stores import StoreSettings
from syncer.planning.changes import ACTIONS, Change, ChangeLog
from syncer.planning.mapping import compile_mapping
from syncer.planning.validation import RowResult, Validator
from tests.conftest import HEADER
from tests.test_properties import COLUMNS, MAPPING, PROFILE, VALID, hostile, rows


def same(plain: RowResult, full: RowResult) -> None:
    # repr: Decimal("12.5") == Decimal("12.50"), but they are not the same offer's price
    assert [repr(offer) for offer in plain.offers] == [repr(offer) for offer in full.offers]
    assert plain.rejections == full.rejections
    assert (plain.row, plain.sku, plain.key, plain.sku_certain) == \
        (full.row, full.sku, full.key, full.sku_certain)
    assert plain.listed_stores == full.listed_stores
    assert plain.rejected_stores == full.rejected_stores
    assert list(plain.unpriced.items()) == list(full.unpriced.items())


def check(mapping: object, catalog: Sequence[Sequence[str]]) -> None:
    plain, full = Validator(mapping), Validator(mapping, plain=False)  # type: ignore[arg-type]
    for row, values in enumerate(catalog, start=2):
        same(plain.validate(row, values), full.validate(row, values))


@settings(max_examples=300, deadline=None)
@given(st.lists(rows(one_in=40), min_size=1, max_size=8))
def test_the_plain_path_validates_any_cells_as_full_validation(
        catalog: list[list[str]]) -> None:
    check(MAPPING, catalog)


# Odd cells, drawn from small pools so that rows repeat them: what a store remembers of one
# row's cells is then what decides the next rows'. Mostly valid ones (spaces, decimal commas,
# other digits), so that whole rows take the plain path; now and then one that is not.
AMOUNTS = ["199.90", " 199.90 ", "199,90", "199.9", "0199.90", "0.50", "12", "999999999.99",
           "١٩٩.٩٠", "１９９.９０", "5.00"]
BAD_AMOUNTS = ["0.00", "0", "-5", "-0", "1 234,56", "1,234.56", "9" * 30, "1000000000.00",
               "1e3", "12.", ".5", " ", "NaN", "12.345", "€199"]
COUNTS = ["12", " 12 ", "12.0", "+12", "24", "١٢", "１２", "036", "12.000"]
STOCKS = ["0", "3", " 7 ", "3.0", "+2", "٣", *COUNTS]
BAD_COUNTS = ["-12", "12,0", "1e1", "9" * 30, "2147483648", " ", "12.5", "-0", "²", "6",
              "0"]  # (6 months: enough in fr, not in de)
COMMENTS = ["", " ", "Très bon état", " padded ", "a\nb\tc", "x" * 500, "€", "=1+1"]
BAD_COMMENTS = ["nul\x00", "bell\x07", "x" * 501, "lone \ud800", "\x1b[31m"]


def odd(pool: list[str], bad: list[str]) -> st.SearchStrategy[str]:
    """One of ``pool`` mostly; one of ``bad`` one time in 30, anything one in 60."""
    return st.integers(1, 60).flatmap(
        lambda n: st.sampled_from(pool) if n > 3 else st.sampled_from(bad) if n > 1
        else hostile)


ODD = {**VALID,
       "sku": st.text(st.sampled_from("ABab1-É\u0301 "), min_size=1, max_size=3),
       "ean": st.sampled_from(["4006381333931", "73513537", "036000291452", "",
                               " 4006381333931 "]),
       "price_fr": odd(AMOUNTS, BAD_AMOUNTS), "price_de": odd(["", *AMOUNTS], BAD_AMOUNTS),
       "warranty_fr": odd(COUNTS, BAD_COUNTS), "warranty_de": odd(COUNTS, BAD_COUNTS),
       "comment_fr": odd(COMMENTS, BAD_COMMENTS), "comment_de": odd(COMMENTS, BAD_COMMENTS),
       "stock": odd(STOCKS, BAD_COUNTS), "safety_stock": odd(["", *STOCKS], BAD_COUNTS),
       "max_quantity": odd(["", *STOCKS], BAD_COUNTS)}


@st.composite
def odd_rows(draw: st.DrawFn, columns: Sequence[str]) -> list[str]:
    return [draw(ODD.get(name, st.just(""))) for name in columns]


# Both stores read the same shape of cells (no currency_de column): a store's memory is
# its own, as its warranty minimum is (fr 6 months, de 12).
SAME_SHAPE = compile_mapping(PROFILE, HEADER.split(";"), [
    StoreSettings(name="fr", locale="fr-fr"),
    StoreSettings(name="de", locale="de-de", warranty_min_months=12)])


@settings(max_examples=300, deadline=None)
@given(st.lists(odd_rows(HEADER.split(";")), min_size=1, max_size=12))
def test_remembered_cells_decide_as_reading_them_again_would(
        catalog: list[list[str]]) -> None:
    check(SAME_SHAPE, catalog)


@settings(max_examples=100, deadline=None)
@given(st.lists(odd_rows(COLUMNS), min_size=1, max_size=12))
def test_remembered_cells_with_every_optional_column(catalog: list[list[str]]) -> None:
    check(MAPPING, catalog)


def test_a_warranty_one_store_accepts_is_refused_by_a_store_that_needs_more() -> None:
    validator = Validator(SAME_SHAPE)
    cells = "{sku};;4006381333931;Excellent;3;;;199.90;189.90;6;6;;"
    first = validator.validate(2, cells.format(sku="A").split(";"))
    second = validator.validate(3, cells.format(sku="B").split(";"))
    for row, result in ((2, first), (3, second)):
        assert [offer.store for offer in result.offers] == ["fr"]
        assert [r.message() for r in result.rejections] == [
            f"row {row} (SKU {result.sku}) [store de]: warranty (column 'warranty_de') is "
            "'6'; expected a warranty of at least 12 months"]


def test_each_row_publishes_the_quantity_of_its_own_stock_cells() -> None:
    validator = Validator(SAME_SHAPE)
    quantities = []
    for row, (sku, stock, safety, most) in enumerate(
            [("A", "5", "1", ""), ("B", "5", "1", "2"), ("C", "5", "", ""), ("D", "5", "1", ""),
             ("E", "5", "1", "2"), ("F", " 5", "1", "")], start=2):
        cells = f"{sku};;4006381333931;Excellent;{stock};{safety};{most};199.90;;12;12;;"
        result = validator.validate(row, cells.split(";"))
        quantities.append([offer.quantity for offer in result.offers])
    assert quantities == [[4], [2], [5], [4], [2], [4]]


# Changes of every shape, creates among them with fields a create of a plan never has (a
# listing, an error, field changes): those are written whole. (Queued ones all since the same
# time, and no pricing: a spilled log orders those within each block written, not overall.)
none_or = st.one_of(st.none(), st.sampled_from(["", "x", "É"]))
changes = st.builds(
    lambda action, store, sku, quantity, fields, row, listing, error, queued, digest:
    Change(action, store, sku, (None, "73513537", "GOOD", quantity, "1.00", "EUR", 12, None,
                                None, None, None, None),
           fields, row, listing, error, queued, digest),
    st.sampled_from(ACTIONS), st.sampled_from(["fr", "de"]), st.sampled_from(["A", "b", "É"]),
    st.integers(0, 2), st.one_of(st.none(), st.just(()), st.just((("quantity", 1, 0),)),
                                 st.just((("price", "2.00", "1.00"),))),
    st.one_of(st.none(), st.integers(2, 9)), none_or, none_or,
    st.sampled_from([None, None, "2026-11-23T06:00:00+00:00"]),
    st.one_of(st.none(), st.integers(0, 2**63 - 1)))


@settings(max_examples=200, deadline=None)
@given(st.lists(changes, max_size=30), st.integers(1, 8))
def test_a_spilled_change_log_reads_back_what_one_in_memory_gives(
        planned: list[Change], spill_at: int) -> None:
    spilled = ChangeLog(spill_at=spill_at)
    for change in planned:
        if change.action == "create" and change.changes is None and change.listing_id is None \
                and change.previous_error is None:
            spilled.append_create(change.store, change.sku, change.target, change.row,
                                  change.queued_since, change.source_hash)
        else:
            spilled.append(change)
    in_memory = ChangeLog(planned)
    assert list(spilled) == list(in_memory)
    assert [tuple(map(type, c)) for c in spilled] == [tuple(map(type, c)) for c in in_memory]
    assert spilled.counts == in_memory.counts and spilled.offline == in_memory.offline
    spilled.close()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "b", "É"]),
                          st.sampled_from([None, None, "2026-11-23T06:00:00+00:00"]),
                          st.one_of(st.none(), st.integers(0, 2**63 - 1))), max_size=30),
       st.integers(1, 8))
def test_a_first_plan_s_creates_read_back_queued_first_whenever_they_spill(
        creates: list[tuple[str, str | None, int | None]], spill_at: int) -> None:
    target = (None, "73513537", "GOOD", 1, "1.00", "EUR", 12, None, None, None, None, None)
    planned = [Change("create", "fr", sku, target, None, row, None, None, queued, digest)
               for row, (sku, queued, digest) in enumerate(creates, start=2)]
    spilled = ChangeLog(spill_at=spill_at)
    for change in planned:
        spilled.append_create("fr", change.sku, target, change.row, change.queued_since,
                              change.source_hash)
    expected = [c for c in planned if c.queued_since] + [c for c in planned if not c.queued_since]
    assert list(spilled) == expected
    assert spilled.priorities == [0, 0, 0, len(planned)]
    spilled.close()
