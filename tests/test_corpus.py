"""Hostile catalogs (``tests/corpus/``, and big ones generated here) against a live shop.

For every case, with offers A-1..J-10 live in both stores: ``syncer plan`` gives exactly the
expected rejections (row, field, store) and changes, or exits 1 with one clear error line;
``syncer apply`` never crashes and never sends quantity 0 for a live offer. A catalog that
would zero too much (header only, stock all 0) stops on the safety share before sending; a
file cut inside its last row is refused whole.
Every exchange with the emulator is checked against Back Market's spec at teardown.
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from syncer.core.offers import sku_key
from syncer.emulator.server import EmulatorServer
from tests.conftest import HEADER, TOKEN, catalog_row
from tests.helpers import Shop

CORPUS = Path(__file__).parent / "corpus"
LIVE = tuple(f"{c}-{i}" for i, c in enumerate("ABCDEFGHIJ", 1))
GOOD = [catalog_row(sku) for sku in LIVE]
STORES = ("fr", "de")
Rejected = tuple[int, str, str | None]  # row, field, store (None: the whole row)


@dataclass(frozen=True)
class Case:
    """A hostile catalog and what must come of it. ``outcome``: "error" (plan and apply exit
    1 with one line holding ``message``), "rejections" (``rejected`` exactly, ``changes``
    planned and applied), or "safety-stop" (plan shows ``changes``; apply stops on
    ``message``)."""

    name: str
    outcome: str
    message: str = ""
    rejected: frozenset[Rejected] = frozenset()
    changes: frozenset[tuple[str, str, str]] = frozenset()  # store, action, sku
    make: Callable[[Path], None] | None = None  # generated at run time instead of committed
    legacy_encoding: str | None = None  # catalog.legacy_encoding for this case

    def __str__(self) -> str:
        return self.name


def both(action: str, *skus: str) -> frozenset[tuple[str, str, str]]:
    return frozenset((store, action, sku) for store in STORES for sku in skus)


def lines(path: Path, rows: list[str], header: str = HEADER) -> None:
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows), encoding="utf-8")


def binary_garbage(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(256 * 1024))


def ten_mb_cell(path: Path) -> None:
    lines(path, [catalog_row("A-1", comment_fr="x" * 10 * 1024 * 1024), *GOOD[1:]])


def cell_over_the_field_limit(path: Path) -> None:
    lines(path, [catalog_row("A-1", comment_fr="x" * 17 * 1024 * 1024), *GOOD[1:]])


def hundred_thousand_columns(path: Path) -> None:
    extra = "".join(f";extra_{i}" for i in range(100_000 - HEADER.count(";") - 1))
    lines(path, [row + ";" * extra.count(";") for row in GOOD], header=HEADER + extra)


def row_with_hundred_thousand_fields(path: Path) -> None:
    lines(path, [GOOD[0], GOOD[1] + ";" * (100_000 - 13), *GOOD[2:]])


CASES = [
    Case("empty.csv", "error", "is empty: no header line"),
    Case("blank_lines.csv", "error", "is empty: no header line"),
    Case("header_only.csv", "safety-stop", "would zero 10 of 10 live offers (100%",
         changes=both("zero", *LIVE)),
    # Cut short by an interrupted export: refused whole, the offers after the cut stay live.
    Case("truncated_last_line.csv", "error", "ends in the middle of row 11"),
    Case("truncated_half.csv", "error", "ends in the middle of row 7"),
    Case("unclosed_quote.csv", "error",
         "cannot be parsed at row 5: a quoted cell runs over several lines"),
    Case("wrong_delimiter.csv", "rejections",
         rejected=frozenset((row, "row", None) for row in range(2, 12))),
    Case("one_row_wrong_delimiter.csv", "rejections", rejected=frozenset({(11, "row", None)})),
    Case("latin1_undeclared.csv", "error", "is not valid utf-8 near row 3 (byte 0xe8); save it "
                                           "as UTF-8 or set catalog.legacy_encoding"),
    Case("nul_bytes.csv", "rejections",
         rejected=frozenset({(4, "comment", "fr"), (12, "sku", None)})),
    Case("utf16_without_bom.csv", "error", "has NUL bytes in its header line: it looks like "
                                           "UTF-16"),
    Case("duplicate_headers.csv", "error",
         "catalog header has the column 'price_fr' more than once"),
    Case("duplicate_unused_headers.csv", "rejections"),
    Case("sku_case_and_normalisation.csv", "rejections",
         rejected=frozenset({(12, "sku", None), (14, "sku", None), (15, "sku", None)}),
         changes=both("create", "Caf\u00e9")),
    Case("hostile_numbers.csv", "rejections", rejected=frozenset({
        (2, "price", "fr"), (2, "price", "de"), (3, "price", "fr"), (3, "price", "de"),
        (4, "price", "fr"), (4, "warranty", "fr"), (5, "price", "fr"), (6, "price", "fr"),
        (7, "price", "fr"), (8, "price", "fr"), (9, "price", "fr"), (10, "stock", None),
        (11, "stock", None), (11, "price", "de")})),
    Case("formulas.csv", "rejections",
         changes=frozenset({("fr", "update", sku) for sku in LIVE[:5]}) | both("create",
                                                                               "=K-11")),
    Case("excel_sep_line.csv", "error", "catalog has no column 'sku' for field sku"),
    Case("binary_garbage", "error", "is not valid utf-8 near row", make=binary_garbage),
    Case("ten_mb_cell", "rejections", rejected=frozenset({(2, "comment", "fr")}),
         make=ten_mb_cell),
    Case("cell_over_the_field_limit", "error",
         "cannot be parsed at row 2: field larger than field limit",
         make=cell_over_the_field_limit),
    Case("hundred_thousand_columns", "rejections", make=hundred_thousand_columns),
    Case("row_with_hundred_thousand_fields", "rejections",
         rejected=frozenset({(3, "row", None)}), make=row_with_hundred_thousand_fields),
]


# --- damage that must never zero, raise or blank a live offer (issue 10) ------------------------

def with_rows(change: Callable[[list[str]], list[str]], header: str = HEADER
              ) -> Callable[[Path], None]:
    """A generated case: the good catalog with its rows changed."""
    def make(path: Path) -> None:
        lines(path, change(list(GOOD)), header=header)
    return make


def replace_row(index: int, row: str) -> Callable[[Path], None]:
    return with_rows(lambda rows: [*rows[:index], row, *rows[index + 1:]])


def cells(index: int) -> list[str]:
    return GOOD[index].split(";")


def drop_cell(index: int, cell: int) -> Callable[[Path], None]:
    shifted = cells(index)
    del shifted[cell]
    return replace_row(index, ";".join(shifted))


def insert_cell(index: int, cell: int, value: str) -> Callable[[Path], None]:
    shifted = cells(index)
    shifted.insert(cell, value)
    return replace_row(index, ";".join(shifted))


def renamed(column: str, to: str) -> Callable[[Path], None]:
    return with_rows(lambda rows: rows, header=HEADER.replace(column, to, 1))


def every_row(**cells_: str) -> Callable[[Path], None]:
    return with_rows(lambda rows: [catalog_row(sku, **cells_) for sku in LIVE])


def grade_first(path: Path) -> None:
    """An export that puts grade first, where J-10's row lost its grade cell."""
    def move(row: str) -> str:
        c = row.split(";")
        return ";".join([c[3], *c[:3], *c[4:]])
    rows = [move(row) for row in GOOD[:9]]
    j = GOOD[9].split(";")
    rows.append(";".join(j[:3] + j[4:]))
    lines(path, rows, header=move(HEADER))


def invisible_sku(index: int, sku: str) -> Case:
    return Case(f"sku_{sku.encode('unicode_escape').decode()}", "rejections",
                rejected=frozenset({(index + 2, "sku", None)}),
                make=replace_row(index, catalog_row(sku)))


def cut(rows: int, keep: int, crlf: bool = False, then: str = "") -> Callable[[Path], None]:
    """An export interrupted after ``rows`` whole rows and ``keep`` characters of the next
    (followed by ``then``)."""
    def make(path: Path) -> None:
        end = "\r\n" if crlf else "\n"
        path.write_bytes((HEADER + end + "".join(row + end for row in GOOD[:rows])
                          + GOOD[rows][:keep] + then).encode())
    return make


def cut_in_quote(path: Path) -> None:
    rows = [*GOOD[:9], catalog_row("J-10", comment_fr="Très bon; état")]
    text = HEADER + "\n" + "\n".join(rows)
    path.write_bytes(text[:text.rindex("état")].encode())


def encoded(rows: list[tuple[str, str]], bom: bool = False, crlf: bool = False
            ) -> Callable[[Path], None]:
    """The good catalog where rows (SKU, encoding) get an accented French comment written in
    that encoding, the rest of the file in UTF-8."""
    def make(path: Path) -> None:
        end = "\r\n" if crlf else "\n"
        by_sku = dict(rows)
        data = ("\ufeff" if bom else "").encode() + (HEADER + end).encode()
        for sku in LIVE:
            if sku in by_sku:
                data += (catalog_row(sku, comment_fr=COMMENT) + end).encode(by_sku[sku])
            else:
                data += (catalog_row(sku) + end).encode()
        path.write_bytes(data)
    return make


def accented(*skus: str) -> frozenset[tuple[str, str, str]]:
    return frozenset(("fr", "update", sku) for sku in skus)


COMMENT = "Très bon état, écran neuf"
OTHER_EAN = "5260181590836"
CASES += [
    invisible_sku(0, "A\u200b-1"),           # zero-width space
    invisible_sku(1, "\ufeffB-2"),           # a byte-order mark inside the file
    invisible_sku(2, "C\u00a0-3"),           # no-break space
    invisible_sku(3, "D-4\u2060"),           # word joiner at the end
    invisible_sku(4, "E\u200f-5"),           # right-to-left mark
    invisible_sku(5, "F\u202e-6"),           # right-to-left override
    invisible_sku(6, "G\u00ad-7"),           # soft hyphen
    invisible_sku(7, "H-\U000e00388"),       # a tag character
    invisible_sku(8, "I\u3000-9"),           # ideographic space
    invisible_sku(9, "J-1\u20280"),          # line separator
    Case("sku_stray_quote", "rejections", rejected=frozenset({(2, "sku", None)}),
         make=replace_row(0, '"A-1"""' + GOOD[0][3:])),
    Case("sku_blank_on_a_full_row", "rejections", rejected=frozenset({(2, "sku", None)}),
         make=replace_row(0, GOOD[0][3:])),
    Case("sku_of_spaces", "rejections", rejected=frozenset({(2, "sku", None)}),
         make=replace_row(0, "   " + GOOD[0][3:])),
    Case("uncertain_row_beside_a_removed_sku", "rejections",
         rejected=frozenset({(2, "sku", None)}),
         make=with_rows(lambda rows: [catalog_row("A\u200b-1"), *rows[1:9]])),
    Case("shifted_row_missing_a_cell", "rejections", rejected=frozenset({(4, "row", None)}),
         make=drop_cell(2, 2)),
    Case("shifted_row_extra_cell", "rejections", rejected=frozenset({(5, "row", None)}),
         make=insert_cell(3, 1, "x")),
    Case("shifted_row_sku_not_first", "rejections", rejected=frozenset({(11, "row", None)}),
         make=grade_first),
    Case("renamed_safety_stock", "error", "catalog has no column 'safety_stock'",
         make=renamed("safety_stock", "safety stock")),
    Case("renamed_max_quantity", "error", "catalog has no column 'max_quantity'",
         make=renamed("max_quantity", "max_qty")),
    Case("renamed_comment_fr", "error", "catalog has no column 'comment_fr'",
         make=renamed("comment_fr", "commentaire_fr")),
    Case("renamed_warranty_de", "error", "catalog has no column 'warranty_de'",
         make=renamed("warranty_de", "garantie_de")),
    Case("renamed_stock", "error", "catalog has no column 'stock'",
         make=renamed(";stock;", ";qty;")),
    Case("header_with_invisible_character", "error", "catalog has no column 'safety_stock'",
         make=renamed("safety_stock", "safety_stock\u200b")),
    Case("product_link_columns_renamed", "error", "neither of the product link columns",
         make=with_rows(lambda rows: rows,
                        header=HEADER.replace("product_id", "pid").replace(";ean;", ";gtin;"))),
    Case("header_case_and_spaces_differ", "rejections",
         make=renamed("price_de", " PRICE_DE ")),
    Case("empty_price_in_one_store", "rejections", rejected=frozenset({(2, "price", "de")}),
         make=replace_row(0, catalog_row("A-1", price_de=""))),
    Case("empty_price_in_every_store", "rejections",
         rejected=frozenset({(3, "price", "fr"), (3, "price", "de")}),
         make=replace_row(1, catalog_row("B-2", price_fr="", price_de=""))),
    Case("empty_price_column_fr", "rejections",
         rejected=frozenset((row, "price", "fr") for row in range(2, 12)),
         make=every_row(price_fr="")),
    Case("invisible_character_in_price", "rejections", rejected=frozenset({(2, "price", "fr")}),
         make=replace_row(0, catalog_row("A-1", price_fr="199.90\u200b"))),
    Case("invisible_character_in_stock", "rejections", rejected=frozenset({(2, "stock", None)}),
         make=replace_row(0, catalog_row("A-1", stock="\u20605"))),
    Case("case_variant_sku_for_another_product", "rejections",
         rejected=frozenset({(2, "ean", "fr"), (2, "ean", "de")}),
         make=replace_row(0, catalog_row("a-1", ean=OTHER_EAN, stock="9"))),
    Case("stock_column_all_zero", "safety-stop", "would zero 10 of 10 live offers (100%",
         changes=both("update", *LIVE), make=every_row(stock="0")),
    Case("max_quantity_all_zero", "safety-stop", "would zero 10 of 10 live offers (100%",
         changes=both("update", *LIVE), make=every_row(max_quantity="0")),
    Case("safety_stock_equals_stock", "safety-stop", "would zero 10 of 10 live offers (100%",
         changes=both("update", *LIVE), make=every_row(safety="5")),
    Case("three_of_ten_removed", "safety-stop", "would zero 3 of 10 live offers (30%",
         changes=both("zero", *LIVE[7:]), make=with_rows(lambda rows: rows[:7])),
    Case("half_gone_half_stock_zero", "safety-stop", "would zero 4 of 10 live offers (40%",
         changes=both("zero", *LIVE[8:]) | both("update", *LIVE[:2]),
         make=with_rows(lambda rows: [catalog_row(sku, stock="0") for sku in LIVE[:2]]
                        + rows[2:8])),
    # Cut-off files: the last line has no line break and too few fields.
    Case("cut_in_the_ean_cell", "error", "ends in the middle of row 11", make=cut(9, 12)),
    Case("cut_after_a_delimiter", "error", "ends in the middle of row 11",
         make=cut(9, len(GOOD[9].split(";")[0]) + 1)),
    Case("cut_after_the_sku", "error", "ends in the middle of row 8", make=cut(6, 3)),
    Case("cut_in_the_first_data_row", "error", "ends in the middle of row 2", make=cut(0, 20)),
    Case("cut_with_crlf_line_breaks", "error", "ends in the middle of row 6",
         make=cut(4, 30, crlf=True)),
    Case("cut_inside_a_quoted_comment", "error", "ends in the middle of row 11",
         make=cut_in_quote),
    Case("cut_in_the_header", "error", "catalog has no column",
         make=lambda path: path.write_bytes(HEADER[:40].encode())),
    # Not cut: the last row has every field but no line break, or is short but ends its line.
    Case("no_final_line_break", "rejections",
         make=lambda path: path.write_bytes(("\n".join([HEADER, *GOOD])).encode())),
    Case("short_last_row_with_its_line_break", "rejections",
         rejected=frozenset({(11, "row", None)}), make=cut(9, 20, then="\n")),
    # Mixed encodings (legacy_encoding = cp1252): UTF-8 lines stay UTF-8.
    Case("one_cp1252_row_in_utf8", "rejections", changes=accented("A-1", "B-2"),
         make=encoded([("A-1", "utf-8"), ("B-2", "cp1252")]), legacy_encoding="cp1252"),
    Case("cp1252_rows_with_bom_and_crlf", "rejections", changes=accented("C-3", "D-4", "E-5"),
         make=encoded([("C-3", "cp1252"), ("D-4", "utf-8"), ("E-5", "cp1252")], bom=True,
                      crlf=True), legacy_encoding="cp1252"),
    Case("every_accented_row_cp1252", "rejections", changes=accented(*LIVE[:4]),
         make=encoded([(sku, "cp1252") for sku in LIVE[:4]]), legacy_encoding="cp1252"),
    Case("one_latin1_row_in_utf8", "rejections", changes=accented("F-6", "G-7"),
         make=encoded([("F-6", "latin-1"), ("G-7", "utf-8")]), legacy_encoding="latin-1"),
    Case("utf8_file_with_legacy_configured", "rejections", changes=accented("H-8"),
         make=encoded([("H-8", "utf-8")]), legacy_encoding="cp1252"),
]


@pytest.fixture
def shop(tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Shop:
    """A shop whose offers A-1..J-10 are live (quantity 5) in both stores."""
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop = Shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state' / 'syncer.db'}")
    shop.catalog(GOOD)
    shop.run("apply")
    assert all(shop.live(sku, "fr-fr")["quantity"] == 5 for sku in LIVE)  # type: ignore[index]
    return shop


def use(shop: Shop, case: Case) -> None:
    target = shop.folder / "catalog.csv"
    if case.make is not None:
        case.make(target)
    else:
        shutil.copyfile(CORPUS / case.name, target)


def error_lines(result: Result) -> list[str]:
    """stderr without the JSON log lines: what a person reads."""
    return [line for line in result.stderr.splitlines() if not line.startswith("{")]


def assert_one_clear_error(result: Result, message: str) -> None:
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    [line] = error_lines(result)
    assert line.startswith("error: ") and message in line, line
    assert "Traceback" not in result.stderr


def quantities_sent(shop: Shop, since: int) -> list[tuple[str, int]]:
    """(SKU key, quantity) of every quantity sent to the emulator since exchange ``since``,
    by batch (its CSV) or by single listing update (its listing id)."""
    by_id: dict[str, str] = {}
    for sku in LIVE:
        listing = shop.live(sku, "fr-fr")
        if listing is not None:
            by_id[str(listing["id"])] = by_id[str(listing["listing_id"])] = sku.casefold()
    sent = []
    for exchange in shop.server.emulator.exchanges[since:]:
        body: Any = exchange.request
        if exchange.method != "POST" or not isinstance(body, dict):
            continue
        if exchange.path == "/ws/listings":
            for row in csv.DictReader(io.StringIO(body["catalog"]), delimiter=";"):
                if row.get("quantity", "") != "":
                    sent.append((row["sku"].casefold(), int(row["quantity"])))
        elif exchange.path.startswith("/ws/listings/") and "quantity" in body:
            sent.append((by_id.get(exchange.path.rsplit("/", 1)[1], "?"), body["quantity"]))
    return sent


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_catalog_gives_rejections_or_one_clear_error_and_never_zeroes(
        shop: Shop, case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    use(shop, case)
    if case.legacy_encoding:
        monkeypatch.setenv("SYNCER_CATALOG__LEGACY_ENCODING", case.legacy_encoding)
    before = len(shop.server.emulator.exchanges)
    listings = {(sku, locale): shop.live(sku, locale) for sku in LIVE
                for locale in ("fr-fr", "de-de")}

    plan = shop.run("plan", "--format", "json", code=None)
    if case.outcome == "error":
        assert_one_clear_error(plan, case.message)
    else:
        assert plan.exit_code in (0, 2), (plan.stderr, plan.exception)
        found = json.loads(plan.stdout)
        assert {(r["row"], r["field"], r["store"]) for r in found["rejections"]} == \
            case.rejected
        assert {(c["store"], c["action"], c["sku"]) for c in found["changes"]} == case.changes
        assert plan.exit_code == (2 if case.changes else 0)
    assert len(shop.server.emulator.exchanges) == before  # plan sends nothing

    applied = shop.run("apply", code=None)
    if case.outcome in ("error", "safety-stop"):
        assert_one_clear_error(applied, case.message)
        assert len(shop.server.emulator.exchanges) == before  # stopped before sending
    else:
        assert applied.exit_code == 0, (applied.output, applied.exception)
    zeroed = {sku for sku, quantity in quantities_sent(shop, before) if quantity == 0}
    assert not zeroed & {sku.casefold() for sku in LIVE}
    changed = {(store, sku) for store, _, sku in case.changes} if case.outcome == "rejections" \
        else set()
    for (sku, locale), listing in listings.items():
        # Nothing else of a live offer moved: no zero, no quantity raised, no field blanked.
        if (locale[:2], sku) not in changed:
            assert shop.live(sku, locale) == listing, (sku, locale)
    assert_no_duplicate_listing(shop)
    assert_no_mojibake(shop, exact=case.legacy_encoding is not None)


def assert_no_mojibake(shop: Shop, exact: bool) -> None:
    """No text of a listing holds UTF-8 read as a legacy encoding ("Ã©" for "é"); ``exact``:
    every comment is empty or the accented one of the encoding cases."""
    for listing in shop.server.emulator.listings(TOKEN):
        for locale, market in listing["markets"].items():
            text = market["comment"] or ""
            assert "Ã" not in text and "Â" not in text, (listing["sku"], locale, text)
            if text and exact:
                assert text == COMMENT, (listing["sku"], locale, text)


def assert_no_duplicate_listing(shop: Shop) -> None:
    """No two listings whose SKUs read the same once invisible characters are dropped."""
    seen: dict[str, str] = {}
    for listing in shop.server.emulator.listings(TOKEN):
        shown = "".join(c for c in listing["sku"] if c.isprintable() and not c.isspace())
        key = sku_key(shown)
        assert key not in seen, (seen[key], listing["sku"])
        seen[key] = listing["sku"]


def test_spreadsheet_formulas_in_text_fields_are_published_as_plain_text(shop: Shop) -> None:
    use(shop, Case("formulas.csv", "rejections"))
    shop.run("apply")
    with (CORPUS / "formulas.csv").open(encoding="utf-8", newline="") as fh:
        expected = {row["sku"]: row["comment_fr"] for row in csv.DictReader(fh, delimiter=";")}
    for sku, comment in expected.items():
        assert (shop.live(sku, "fr-fr")["comment"] or "") == comment  # type: ignore[index]
    assert shop.live("=K-11", "de-de")["sku"] == "=K-11"  # type: ignore[index]
    assert expected["A-1"].startswith("=HYPERLINK(")


def test_formulas_from_the_catalog_are_escaped_in_csv_exports(shop: Shop) -> None:
    use(shop, Case("formulas.csv", "rejections"))
    shop.server.emulator.faults.reject_skus["@SKU-12"] = "=HYPERLINK(\"http://evil\")"
    with (shop.folder / "catalog.csv").open("a", encoding="utf-8") as fh:
        fh.write(catalog_row("@SKU-12") + "\n")
    shop.run("apply", code=3)

    shop.server.emulator.create_order(TOKEN, [{"sku": "=K-11", "quantity": 1}], country="fr-fr")
    shop.run("orders", "pull", "--store", "fr")
    [export] = (shop.folder / "state" / "orders").glob("*.csv")
    with export.open(encoding="utf-8", newline="") as fh:
        [line] = list(csv.DictReader(fh, delimiter=";"))
    assert line["sku"] == "'=K-11"

    errors = shop.run("errors", "--format", "csv").stdout
    rows = list(csv.reader(io.StringIO(errors), delimiter=";"))
    cells = {cell for row in rows[1:] for cell in row}
    assert "'@SKU-12" in cells and "@SKU-12" not in cells
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)
