"""Properties of reading, mapping, validation and planning, over arbitrary input.

- Any cells: validation gives valid offers or rejections, never an exception; every
  rejection names its row and a field; every offer keeps Back Market's rules.
- Any bytes as a CSV file: rows that validate (as above), or one ``CatalogError``.
- Any catalog changes after a confirmed publication: the plan made with the unchanged-row
  fast path equals the plan made by validating every row.
"""

from __future__ import annotations

import re
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from stdnum import ean as ean_check

from syncer.catalog.files import CatalogStream, CsvCatalog
from syncer.config.settings import BUNDLED_MAPPINGS, Settings, load_settings
from syncer.config.stores import StoreSettings
from syncer.core.offers import Offer, money, sku_key
from syncer.core.snapshot import Ack
from syncer.core.vocabulary import GRADES
from syncer.errors import CatalogError, ConfigError
from syncer.pipeline.planner import make_plan
from syncer.planning.cells import MAX_SKU, ean_check_digit
from syncer.planning.diff import SnapshotIndex, pair
from syncer.planning.mapping import compile_mapping, load_profile
from syncer.planning.plan import Plan
from syncer.planning.validation import MAX_COMMENT, Validator
from syncer.state.store import StateStore
from tests.conftest import HEADER, write_config

# The default profile's columns, and a few optional ones it maps too.
COLUMNS = (*HEADER.split(";"), "min_price_fr", "max_price_fr", "currency_de", "deee",
           "shipper_1", "shipping_price_1_fr", "shipping_price_1_de", "shipping_delay_1")
STORES = [StoreSettings(name="fr", locale="fr-fr"),
          StoreSettings(name="de", locale="de-de", warranty_min_months=12)]
WARRANTY_MIN = {s.name: s.warranty_min_months for s in STORES}
PROFILE = load_profile(BUNDLED_MAPPINGS / "default.toml")
MAPPING = compile_mapping(PROFILE, COLUMNS, STORES)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")

# --- cells ---------------------------------------------------------------------------------

any_text = st.text(st.characters(exclude_categories=()), max_size=40)  # surrogates too
long_text = st.builds(lambda unit, n: unit * n, st.text(min_size=1, max_size=3),
                      st.integers(100, 3000))
numeric_text = st.one_of(
    st.builds(lambda *parts: "".join(parts), st.sampled_from(["", "", "+", "-", " "]),
              st.integers(0, 10**11).map(str) | st.just(""),
              st.sampled_from(["", "", ".", ","]), st.integers(0, 99999).map(str) | st.just(""),
              st.sampled_from(["", "", "e3", "E-2", "e+400", " "])),
    st.sampled_from(["NaN", "nan", "Infinity", "-inf", "-0", "+0", "0", "0.00", "-0.0",
                     "1.234,56", "1,234.56", "1 234,56", "0x10", "1_000", "١٢٣", "１２３",
                     "²", "12.", ".5", "9" * 30, "1e999999", "€199", "199 €", "12.0",
                     "2147483648", "-2147483649"]),
)
special = st.sampled_from(["", " ", "\x00", "\t", "\r\n", '"', "'", ";", "=1+1", "@SUM(A1)",
                           "\ufeff", "\u202e", "\ud800", "NULL", "None", "true"])


hostile = st.one_of(any_text, numeric_text, special, long_text)


def cell(valid: st.SearchStrategy[str], one_in: int = 8) -> st.SearchStrategy[str]:
    """Mostly a plausible value (itself sometimes wrong), else anything: one in ``one_in``."""
    return st.integers(1, one_in).flatmap(lambda n: hostile if n == 1 else valid)


VALID = {
    "sku": st.text(st.sampled_from("ABab1-É\u0301"), min_size=1, max_size=4),
    "product_id": st.one_of(st.just(""), st.uuids().map(str)),
    "ean": st.integers(1, 6).flatmap(lambda n: st.text(  # digits that are not ASCII too
        st.sampled_from("0123456789²¹\u0663\uff14"), min_size=8, max_size=13) if n == 1 else
        st.sampled_from(["4006381333931", "73513537", "036000291452", ""])),
    "grade": st.sampled_from([*GRADES, "Gold", "0", "Très bon état", "excellent"]),
    "stock": st.integers(0, 50).map(str),
    "safety_stock": st.sampled_from(["", "0", "1", "2"]),
    "max_quantity": st.sampled_from(["", "3", "10"]),
    "price_fr": st.decimals(Decimal("0.01"), Decimal("9999"), places=2).map(str),
    "price_de": st.one_of(st.just(""), st.sampled_from(["209.90", "1,5", "99"])),
    "warranty_fr": st.sampled_from(["6", "12", "24", "12.0"]),
    "warranty_de": st.sampled_from(["12", "24", "6"]),
    "comment_fr": st.sampled_from(["", "", "Très bon état", "=HYPERLINK(\"x\")", "a\nb\tc",
                                   "nul\x00", "bell\x07", "lone \ud800", "x" * 501]),
    "comment_de": st.sampled_from(["", "Sehr gut", "x" * 500, "\x1b[31m"]),
    "min_price_fr": st.sampled_from(["", "", "1.00"]),
    "max_price_fr": st.sampled_from(["", "", "99999"]),
    "currency_de": st.sampled_from(["", "", "EUR", "eur", "GBP"]),
    "deee": st.sampled_from(["", "", "0", "2.5"]),
    "shipper_1": st.sampled_from(["", "", "", "Colissimo", "UPS", "DHL Express"]),
    "shipping_price_1_fr": st.sampled_from(["0", "4.90"]),
    "shipping_price_1_de": st.sampled_from(["0", "5.90", ""]),
    "shipping_delay_1": st.sampled_from(["24", "48", ""]),
}


@st.composite
def rows(draw: st.DrawFn, columns: Sequence[str] = COLUMNS, one_in: int = 8) -> list[str]:
    """A row of the header's width, mostly; sometimes shorter or longer."""
    values = [draw(cell(VALID.get(name, st.just("")), one_in)) for name in columns]
    shape = draw(st.integers(0, 19))
    if shape == 0:
        values = values[:draw(st.integers(0, len(values) - 1))]
    elif shape == 1:
        values += draw(st.lists(any_text, min_size=1, max_size=3))
    return values


# --- validation ------------------------------------------------------------------------------

def assert_keeps_the_rules(offer: Offer, row: int) -> None:
    assert offer.store in WARRANTY_MIN and offer.row == row
    assert offer.sku and len(offer.sku) <= MAX_SKU and not CONTROL.search(offer.sku)
    assert not re.search(r'[\t\r\n;"]', offer.sku)
    assert offer.price > 0 and offer.price == offer.price.quantize(Decimal("0.01"))
    assert re.fullmatch(r"[0-9]+\.[0-9]{2}", money(offer.price))
    assert isinstance(offer.warranty_delay, int)
    assert offer.warranty_delay >= WARRANTY_MIN[offer.store]
    assert offer.comment is None or (len(offer.comment) <= MAX_COMMENT
                                     and not CONTROL.search(offer.comment))
    assert isinstance(offer.quantity, int) and offer.quantity >= 0
    assert offer.grade in GRADES
    assert offer.product_id is not None or offer.ean is not None
    assert offer.product_id is None or UUID.fullmatch(offer.product_id)
    if offer.ean is not None:
        assert offer.ean.isascii() and offer.ean.isdigit() and len(offer.ean) in (8, 12, 13)
        assert ean_check.is_valid(offer.ean)
    assert offer.currency == "EUR"
    for amount in (offer.min_price, offer.max_price, offer.deee):
        assert amount is None or amount >= 0
    assert offer.min_price is None or offer.min_price <= offer.price
    # the BackPricer band (every store of these properties keeps the default check)
    assert offer.min_price is None or offer.price <= offer.min_price * Decimal("1.08")
    assert offer.max_price is None or offer.price <= offer.max_price
    assert offer.key == sku_key(offer.sku)
    assert offer.published() == offer.compute_published()


def check_result(validator: Validator, row: int, values: Sequence[str]) -> None:
    result = validator.validate(row, values)
    for rejection in result.rejections:
        assert rejection.row == row
        assert rejection.field and rejection.expected
        assert rejection.store in (None, *WARRANTY_MIN)
        assert rejection.message().startswith(f"row {row}")
    whole_row = any(r.store is None for r in result.rejections)
    assert not (whole_row and result.offers)
    blocked = {r.store for r in result.rejections}
    for offer in result.offers:
        assert offer.store not in blocked
        assert_keeps_the_rules(offer, row)


@settings(max_examples=200, deadline=None)
@given(st.lists(rows(), min_size=1, max_size=6))
def test_any_cells_give_valid_offers_or_rejections_naming_row_and_field(
        catalog: list[list[str]]) -> None:
    validator = Validator(MAPPING)
    for row, values in enumerate(catalog, start=2):
        check_result(validator, row, values)


@settings(max_examples=60, deadline=None)
@given(st.lists(rows(), min_size=2, max_size=4))
def test_the_same_sku_twice_in_any_spelling_is_offered_once(catalog: list[list[str]]) -> None:
    assume(catalog[0] and catalog[1])
    catalog[1][0] = catalog[0][0].swapcase()  # a second row with the first row's SKU
    validator = Validator(MAPPING)
    offered: dict[tuple[str, str], int] = {}
    for row, values in enumerate(catalog, start=2):
        for offer in validator.validate(row, values).offers:
            assert (offer.store, offer.sku_key) not in offered, offered
            offered[offer.store, offer.sku_key] = row


# --- reading ---------------------------------------------------------------------------------

csv_pieces = st.one_of(
    rows(HEADER.split(";"), one_in=20).map(
        lambda r: (";".join(r) + "\n").encode("utf-8", "surrogatepass")),
    st.binary(max_size=30),
    any_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b";", b";", b",", b'"', b'""', b"\n", b"\r\n", b"\r", b"\x00", b"\xff",
                     b"\xe9", b"\xef\xbb\xbf", b"\t", b"|", b"4006381333931", b"EXCELLENT",
                     b"199.90", b"12"]),
)
headers = st.sampled_from([
    HEADER.encode(), HEADER.encode(), HEADER.encode(), b"\xef\xbb\xbf" + HEADER.encode(),
    HEADER.replace(";", ",").encode(),
    HEADER.replace(";", "\t").encode(), HEADER.encode("utf-16-le"), b"", b"\n",
    b'"sku;product_id";ean', HEADER.upper().encode(),
])


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=headers, body=st.lists(csv_pieces, max_size=60),
       legacy=st.sampled_from([None, None, "cp1252", "latin-1"]))
def test_any_bytes_give_rows_that_validate_or_one_catalog_error(
        scratch: Path, header: bytes, body: list[bytes], legacy: str | None) -> None:
    path = scratch / "catalog.csv"
    path.write_bytes(header + b"\n" + b"".join(body))
    # Reading, mapping and validation may end in one CatalogError (or ConfigError, for a
    # header the profile cannot map), never in any other exception.
    try:
        with CsvCatalog(path, legacy_encoding=legacy).open() as stream:
            try:
                validator = Validator(compile_mapping(PROFILE, stream.header, STORES))
            except ConfigError:  # a header the profile cannot map: one clear error too
                return
            for row, values in stream.rows:
                assert row >= 2 and all(isinstance(v, str) for v in values)
                check_result(validator, row, values)
    except CatalogError as exc:
        assert str(exc)


# --- planning: the unchanged-row fast path agrees with full validation ------------------------

class Rows:
    """A catalog held in memory (a ``CatalogSource``): any cells, surrogates included."""

    def __init__(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.header = tuple(header)
        self.rows = [list(r) for r in rows]

    @contextmanager
    def open(self) -> Iterator[CatalogStream]:
        yield CatalogStream(self.header, iter(list(enumerate(self.rows, start=2))),
                            "in memory")


@pytest.fixture(scope="module")
def planning(scratch: Path) -> Iterator[tuple[Settings, StateStore, StateStore]]:
    """Settings, and two states: one that keeps each row's source hash (the fast path
    applies), one that does not (every row is validated)."""
    folder = scratch / "planning"
    folder.mkdir()
    write_config(folder, state_url=f"sqlite:///{folder / 'unused.db'}",
                 extra="", stores=(("fr", "fr-fr"), ("de", "de-de")))
    loaded = load_settings(folder / "syncer.toml")
    with StateStore.open(f"sqlite:///{folder / 'fast.db'}") as fast, \
            StateStore.open(f"sqlite:///{folder / 'slow.db'}") as slow:
        yield loaded, fast, slow


def forget_everything(state: StateStore) -> None:
    assert state.engine is not None
    with state.engine.begin() as conn:
        for table in ("offer_snapshot", "store_revision", "offer_queue"):
            conn.execute(text(f"DELETE FROM {table}"))


def confirm(state: StateStore, plan: Plan, *, hashes: bool) -> None:
    """What a fully successful publication of ``plan`` leaves in the state."""
    for store in plan.stores:
        state.offers.record_acks(store.store, [
            Ack(c.sku, c.target, f"id-{c.sku}", c.source_hash if hashes else None)
            for c in store.changes])


def comparable(plan: Plan) -> dict[str, Any]:
    found = plan.to_dict()
    del found["created_at"]
    return found


PLAN_COLUMNS = HEADER.split(";")
edits = st.lists(st.tuples(st.sampled_from(["cell", "drop", "copy", "case", "nfd", "add"]),
                           st.integers(0, 20), st.integers(0, len(PLAN_COLUMNS) - 1),
                           cell(st.just("7"))), max_size=6)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(first=st.lists(rows(PLAN_COLUMNS, one_in=30), min_size=1, max_size=8), changes=edits,
       extra=rows(PLAN_COLUMNS))
def test_the_fast_path_plans_exactly_what_full_validation_plans(
        planning: tuple[Settings, StateStore, StateStore], first: list[list[str]],
        changes: list[tuple[str, int, int, str]], extra: list[str]) -> None:
    loaded, fast, slow = planning
    forget_everything(fast)
    forget_everything(slow)
    published = make_plan(loaded, loaded.stores, Rows(PLAN_COLUMNS, first), fast)
    confirm(fast, published, hashes=True)
    confirm(slow, published, hashes=False)

    catalog = [list(r) for r in first]
    for action, at, column, value in changes:
        if not catalog:
            catalog.append(list(extra))
            continue
        index = at % len(catalog)
        target = catalog[index]
        if action == "cell" and column < len(target):
            target[column] = value
        elif action == "drop":
            del catalog[index]
        elif action == "copy":
            catalog.append(list(target))
        elif action in ("case", "nfd") and target:
            target[0] = target[0].swapcase() if action == "case" else \
                unicodedata.normalize("NFD", target[0])
        elif action == "add":
            catalog.insert(index, list(extra))
    with_fast_path = make_plan(loaded, loaded.stores, Rows(PLAN_COLUMNS, catalog), fast)
    validated = make_plan(loaded, loaded.stores, Rows(PLAN_COLUMNS, catalog), slow)
    assert comparable(with_fast_path) == comparable(validated)


# --- planning: the stores' snapshot indexes held in one answer as each store's would ------------

snapshot_values = st.one_of(st.none(), st.just(-1), st.integers(0, 3))
store_snapshots = st.lists(st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e\x1fx", "f"]),
                                           snapshot_values, max_size=6),
                           min_size=1, max_size=3)


@settings(max_examples=200, deadline=None)
@given(snapshots=store_snapshots, rows=st.lists(st.tuples(
    st.sampled_from(["a", "b", "c", "d", "e\x1fx", "f", "g"]), st.integers(0, 3)), max_size=8))
def test_the_shared_snapshot_index_answers_as_each_store_s_own(
        snapshots: list[dict[str, int | None]], rows: list[tuple[str, int]]) -> None:
    """What the fast path and the diff ask of a store's index (has it this key, this key
    with this row hash, which keys are left once rows are taken) is what that store's own
    snapshot says, whatever the other stores hold and whichever rows were taken."""
    index = SnapshotIndex()
    views = [index.add([pair(key, value) for key, value in snapshot.items()])
             for snapshot in snapshots]
    taken: set[str] = set()
    for key, digest in rows:
        mine = pair(key, digest)
        for view, snapshot in zip(views, snapshots, strict=True):
            assert view.has(mine) == (key in snapshot and snapshot[key] == digest)
        everyone = [view for view, snapshot in zip(views, snapshots, strict=True)
                    if key in snapshot]
        if key not in taken and everyone and all(view.has(mine) for view in everyone):
            index.take(mine)
            taken.add(key)
    for view, snapshot in zip(views, snapshots, strict=True):
        assert len(view) == len(snapshot) and bool(view) == bool(snapshot)
        assert set(view.keys()) == set(snapshot)
        for key in ("a", "e\x1fx", "g"):
            assert (key in view) == (key in snapshot)
            assert view.get(key, "missing") == snapshot.get(key, "missing")
        assert view.left() == sorted(key for key in snapshot if key not in taken)


@given(digits=st.text(alphabet="0123456789", min_size=1, max_size=13))
def test_the_ean_check_digit_is_stdnum_s(digits: str) -> None:
    """Validation's own check digit (a hot path) is the reference implementation's."""
    assert ean_check_digit(digits) == ean_check.calc_check_digit(digits)
