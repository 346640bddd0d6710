"""Rejected catalog rows as CSV and XLSX for the catalog team (the seller's own row, the
reason, the column at fault), and `plan --fail-on-rejections` as a CI gate."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from openpyxl import load_workbook

from syncer.catalog.files import CatalogStream
from syncer.cli.context import EXIT_REJECTIONS
from syncer.cli.main import cli
from syncer.core.offers import Rejection
from syncer.errors import CatalogError
from syncer.reports.rejections import REASON_COLUMNS, Fingerprinted, write_rejections
from tests.conftest import HEADER, TOKEN, catalog_row, write_catalog, write_config
from tests.helpers import Shop, checked_emulator

FORMULAS = ['=HYPERLINK("http://evil.example","click")', "+cmd|' /C calc'!A0", "@SUM(1+1)"]
ROWS = [
    catalog_row("OK-1"),
    catalog_row("BAD-GRADE", grade="Like new-ish", comment_fr=FORMULAS[0]),
    catalog_row("OK-2", comment_fr=FORMULAS[2]),
    catalog_row("BAD-BOTH", stock="-3", price_de="abc", comment_de=FORMULAS[1]),
]


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    write_catalog(tmp_path / "catalog.csv", ROWS)
    return write_config(tmp_path, state_url=f"sqlite:///{tmp_path / 'state.db'}")


def plan(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), "--log-format", "json", "plan",
                                    *args])


def test_rejected_rows_as_xlsx_hold_the_original_cells_and_the_reason(shop: Path) -> None:
    out = shop.parent / "reports" / "rejected.xlsx"
    result = plan(shop, "--rejections", str(out))
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert f"rejected rows written to {out}: 2 catalog rows rejected" in result.stderr

    sheet = load_workbook(out).active
    assert sheet is not None
    lines = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert lines[0] == [*HEADER.split(";"), *REASON_COLUMNS]
    width = len(HEADER.split(";"))
    grade, both = lines[1:]
    original = next(csv.reader([ROWS[1]], delimiter=";"))
    # the cells as read, empty ones included (openpyxl reads an empty string back as None)
    assert [v or "" for v in grade[:width]] == original
    assert grade[width:] == ["3", "all", "grade", grade[-1]]
    assert "grade is 'Like new-ish'; expected a grade such as" in grade[-1]
    assert both[0] == "BAD-BOTH" and both[width:width + 3] == ["5", "all, de", "stock, price_de"]
    assert "stock is '-3'" in both[-1] and "[store de] price (column 'price_de')" in both[-1]
    # formula-looking cells are text, never formulas
    cells = {c.value: c for row in sheet.iter_rows() for c in row}
    for text in (FORMULAS[0], FORMULAS[1]):
        assert cells[text].data_type == "s"


def test_rejected_rows_as_csv_neutralise_formula_cells(shop: Path) -> None:
    out = shop.parent / "rejected.csv"
    result = plan(shop, "--rejections", str(out))
    assert result.exit_code == 2, result.stderr
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8")), delimiter=";"))
    assert rows[0][-4:] == list(REASON_COLUMNS)
    assert [r[0] for r in rows[1:]] == ["BAD-GRADE", "BAD-BOTH"]  # one line per row
    comments = [r[rows[0].index("comment_fr")] for r in rows[1:]] + \
        [r[rows[0].index("comment_de")] for r in rows[1:]]
    assert "'" + FORMULAS[0] in comments and "'" + FORMULAS[1] in comments
    assert rows[2][rows[0].index("stock")] == "'-3"  # a leading minus is quoted too


def test_an_unknown_report_format_fails_before_planning(shop: Path) -> None:
    result = plan(shop, "--rejections", str(shop.parent / "rejected.ods"))
    assert result.exit_code == 1
    assert "must end in .csv or .xlsx" in result.stderr
    assert not (shop.parent / "rejected.ods").exists()


@pytest.mark.parametrize(("args", "code", "said"), [
    ((), 2, None),
    (("--fail-on-rejections",), EXIT_REJECTIONS, "FAIL: 2 catalog rows rejected (limit 0)"),
    (("--fail-on-rejections", "--store", "fr"), EXIT_REJECTIONS, "FAIL: 2 catalog rows"),
    (("--fail-on-rejections", "1"), EXIT_REJECTIONS, "(limit 1)"),
    (("--fail-on-rejections", "2"), 2, "ok: 2 catalog rows rejected (limit 2)"),
])
def test_fail_on_rejections_exit_codes(shop: Path, args: tuple[str, ...], code: int,
                                       said: str | None) -> None:
    result = plan(shop, *args)
    assert result.exit_code == code, result.stderr
    if said is not None:
        assert said in result.stderr


def test_fail_on_rejections_bare_passes_a_clean_catalog(shop: Path) -> None:
    write_catalog(shop.parent / "catalog.csv", [ROWS[0], ROWS[2]])
    result = plan(shop, "--fail-on-rejections")
    assert result.exit_code == 2 and "ok: 0 catalog rows rejected (limit 0)" in result.stderr


def test_quarantined_offers_are_not_counted_as_rejected_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0) as server:
        server.emulator.faults.reject_skus["Q-1"] = "grade not allowed"
        shop = Shop(tmp_path, server, f"sqlite:///{tmp_path / 'state.db'}")
        shop.catalog([catalog_row("Q-0"), catalog_row("Q-1")])
        for _ in range(3):
            shop.run("apply", code=3)
        result = shop.run("plan", "--fail-on-rejections", "--rejections",
                          str(tmp_path / "rejected.csv"), code=0)
    assert "ok: 0 catalog rows rejected (limit 0); 2 quarantined offers not counted " \
           "(see `syncer errors`)" in result.stderr
    assert (tmp_path / "rejected.csv").read_text(encoding="utf-8").count("\n") == 1


class _Changing:
    """A catalog whose second read is another export than the first."""

    def __init__(self) -> None:
        self.reads = 0

    @contextmanager
    def open(self) -> Iterator[CatalogStream]:
        self.reads += 1
        stock = "1" if self.reads == 1 else "2"
        yield CatalogStream(("sku", "stock"), iter([(2, ["A", stock]), (3, ["B", "x"])]),
                            "test")


def test_a_catalog_that_changed_since_the_plan_writes_no_report(tmp_path: Path) -> None:
    source = Fingerprinted(_Changing())
    with source.open() as stream:
        list(stream.rows)
    out = tmp_path / "rejected.csv"
    with pytest.raises(CatalogError, match="the catalog changed while the plan was made"):
        write_rejections(out, source, [Rejection(3, "B", "stock", "x", "a number")])
    assert list(tmp_path.iterdir()) == []


def test_control_characters_and_long_cells_fit_in_xlsx(tmp_path: Path) -> None:
    class Source:
        @contextmanager
        def open(self) -> Iterator[CatalogStream]:
            yield CatalogStream(("sku", "comment"),
                                iter([(2, ["A\x00B", "x" * 40_000, "extra"])]), "test")

    source = Fingerprinted(Source())
    with source.open() as stream:
        list(stream.rows)
    out = tmp_path / "rejected.xlsx"
    write_rejections(out, source, [Rejection(2, "A\x00B", "sku", "A\x00B", "a SKU")])
    sheet = load_workbook(out).active
    assert sheet is not None
    [row] = [[c.value for c in r] for r in sheet.iter_rows(min_row=2)]
    assert row[0] == "A<U+0000>B" and len(row[1]) == 32_767 and row[-1] == "extra"


def test_a_rejection_names_the_column_as_the_sellers_header_spells_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The header is matched ignoring case ("Prix FR" feeds "Prix {country}" of store fr): the
    # seller is told the column of their own file, not the profile's lower-case spelling.
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    header = HEADER.replace(";stock;", ";Stock;").replace(";price_de;", ";PRICE_DE;")
    path = tmp_path / "catalog.csv"
    rows = [header, catalog_row("OK-1"), catalog_row("BAD", stock="-3", price_de="abc")]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = write_config(tmp_path, state_url=f"sqlite:///{tmp_path / 'state.db'}")
    out = tmp_path / "rejected.csv"
    result = plan(config, "--rejections", str(out))
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert "stock (column 'Stock') is '-3'" in result.stdout
    assert "[store de]: price (column 'PRICE_DE') is 'abc'" in result.stdout
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8")), delimiter=";"))
    assert rows[1][rows[0].index("rejection_column")] == "Stock, PRICE_DE"
    assert "Rejected catalog rows (2 problems):" in result.stdout
    path.write_text("\n".join([header, catalog_row("BAD", price_de="abc")]) + "\n",
                    encoding="utf-8")
    assert "Rejected catalog rows (1 problem):" in plan(config).stdout
    assert "### Rejected catalog rows (1 problem)\n" in plan(config, "--format",
                                                              "markdown").stdout
    assert "<h2>Rejected catalog rows (1 problem)</h2>" in plan(config, "--format",
                                                                   "html").stdout
