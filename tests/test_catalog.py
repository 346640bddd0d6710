"""CSV catalogs: delimiters, quoting, encodings; an unreadable file is an error, never empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.catalog import CsvCatalog, sniff_delimiter
from syncer.errors import CatalogError


def read(path: Path, **kwargs: object) -> tuple[tuple[str, ...], list[tuple[int, list[str]]]]:
    with CsvCatalog(path, **kwargs).open() as stream:  # type: ignore[arg-type]
        return stream.header, list(stream.rows)


def test_semicolon_catalog_with_quoted_cells(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('sku;comment\nA;"a; b ""quoted"""\nB;"two\nlines"\n', encoding="utf-8")
    header, rows = read(path)
    assert header == ("sku", "comment")
    assert rows == [(2, ["A", 'a; b "quoted"']), (3, ["B", "two\nlines"])]


def test_comma_catalog_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('sku,price\r\nA,"1,5"\r\n', encoding="utf-8")
    header, rows = read(path)
    assert header == ("sku", "price") and rows == [(2, ["A", "1,5"])]


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes("\ufeffsku;comment\nA;été\n".encode())
    header, rows = read(path)
    assert header == ("sku", "comment") and rows[0][1] == ["A", "été"]


def test_legacy_encoding_is_used_when_the_file_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes("sku;comment\nA;Très bon état\n".encode("cp1252"))
    _, rows = read(path, legacy_encoding="cp1252")
    assert rows[0][1] == ["A", "Très bon état"]


def test_non_utf8_without_legacy_encoding_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"sku;comment\n" + b"A;ok\n" * 3 + "B;Très\n".encode("cp1252"))
    with pytest.raises(CatalogError, match=r"not valid utf-8 near row \d+.*legacy_encoding"):
        read(path)


def test_empty_file_is_an_error_not_an_empty_catalog(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"")
    with pytest.raises(CatalogError, match="empty"):
        read(path)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot open catalog"):
        read(tmp_path / "nope.csv")


def test_header_only_catalog_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("sku;price\n")
    assert read(path) == (("sku", "price"), [])


def test_blank_lines_are_skipped_but_row_numbers_stay_spreadsheet_rows(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("sku;price\nA;1\n\n;\nB;2\n")
    _, rows = read(path)
    assert rows == [(2, ["A", "1"]), (5, ["B", "2"])]


def test_truncated_last_line_comes_through_short(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("sku;price;stock\nA;1;2\nB;3")
    _, rows = read(path)
    assert rows[-1] == (3, ["B", "3"])


def test_sniff_ignores_delimiters_inside_quotes() -> None:
    assert sniff_delimiter('"a;b","c;d",e\n') == ","
    assert sniff_delimiter("a;b;c\n") == ";"
    assert sniff_delimiter("a\tb\n") == "\t"


def test_unknown_encoding_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("sku\nA\n")
    with pytest.raises(CatalogError, match="unknown catalog encoding"):
        read(path, encoding="klingon-8")
