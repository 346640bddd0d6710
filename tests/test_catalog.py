"""CSV catalogs: delimiters, quoting, encodings; an unreadable file is an error, never empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.catalog.files import CsvCatalog, sniff_delimiter
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


def test_a_bad_byte_past_the_first_megabyte_is_an_error_not_the_end_of_the_file(
        tmp_path: Path) -> None:
    # Text is decoded a chunk at a time: a byte that does not decode deep in a big export
    # must stop the read, never end it early (the rows after it would look gone).
    path = tmp_path / "c.csv"
    rows = b"".join(b"SKU-%06d;ok\n" % n for n in range(120_000))
    path.write_bytes(b"sku;comment\n" + rows + "Z;Très\n".encode("cp1252") + b"Y;ok\n")
    with pytest.raises(CatalogError, match=r"not valid utf-8 near row 120002 \(byte 0xe8\)"):
        read(path)


def test_empty_file_is_an_error_not_an_empty_catalog(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"")
    with pytest.raises(CatalogError, match="empty"):
        read(path)


@pytest.mark.parametrize(("start", "what"), [
    (b"PK\x03\x04\x14\x00\x06\x00", "an .xlsx, .ods or other ZIP file"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00", "an .xls workbook")])
@pytest.mark.parametrize("legacy", [None, "cp1252"])
def test_a_workbook_is_refused_as_a_spreadsheet_not_as_an_encoding_problem(
        tmp_path: Path, start: bytes, what: str, legacy: str | None) -> None:
    # Named .csv or not: the error says what the file is and what to do, instead of sending
    # the seller after catalog.legacy_encoding (or, with one set, reading the bytes as text).
    path = tmp_path / "catalog.csv"
    path.write_bytes(start + bytes(range(256)) * 4)
    with pytest.raises(CatalogError, match=rf"is a spreadsheet \({what}\), not a CSV file: "
                                           "export it as CSV"):
        read(path, legacy_encoding=legacy)


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


def test_a_file_cut_in_its_last_row_is_refused_whole(tmp_path: Path) -> None:
    # An interrupted export: the last line has no line break and too few fields. The rows
    # after the cut are missing, not gone: planning from it would zero their offers.
    path = tmp_path / "c.csv"
    path.write_text("sku;price;stock\nA;1;2\nB;3")
    with pytest.raises(CatalogError, match=r"ends in the middle of row 3.*2 fields instead "
                                           r"of 3.*cut short.*Export the catalog again"):
        read(path)


@pytest.mark.parametrize("tail", ["B;3;4", "B;3;4\n", "B;3\n", "B;3;4\r\n", "B;3\n\n"])
def test_a_last_row_with_its_line_break_or_all_its_fields_is_read(tmp_path: Path,
                                                                   tail: str) -> None:
    # Many exporters omit the final line break; a short row that ends its line is a row
    # validation rejects, not a cut file.
    path = tmp_path / "c.csv"
    path.write_bytes(("sku;price;stock\nA;1;2\n" + tail).encode())
    _, rows = read(path)
    assert rows[-1][0] == 3 and rows[-1][1][:2] == ["B", "3"]


def test_a_file_cut_inside_a_quoted_last_cell_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('sku;comment;stock\nA;"ok";2\nB;"Très bon')
    with pytest.raises(CatalogError, match="ends in the middle of row 3"):
        read(path)


def test_mixed_encodings_keep_utf8_lines_and_name_the_legacy_ones(tmp_path: Path) -> None:
    # A UTF-8 export with one row pasted from an older cp1252 file.
    path = tmp_path / "c.csv"
    path.write_bytes("sku;comment\nA;Téléphone\n".encode() + "B;Très bon état\n".encode("cp1252")
                     + "C;Écran neuf\n".encode())
    with CsvCatalog(path, legacy_encoding="cp1252").open() as stream:
        rows = list(stream.rows)
        notes = stream.notes
    assert rows == [(2, ["A", "Téléphone"]), (3, ["B", "Très bon état"]),
                    (4, ["C", "Écran neuf"])]
    assert len(notes) == 1 and "catalog row 3 is not valid UTF-8" in notes[0] \
        and "cp1252" in notes[0]


def test_mixed_encodings_number_rows_across_multiline_cells_and_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes("\ufeffsku;comment\nA;\"two\nlines é\"\n".encode()
                     + "B;Très\r\n".encode("latin-1") + b"C;plain\n")
    with CsvCatalog(path, legacy_encoding="latin-1").open() as stream:
        header, rows, notes = stream.header, list(stream.rows), stream.notes
    assert header == ("sku", "comment")
    assert rows == [(2, ["A", "two\nlines é"]), (3, ["B", "Très"]), (4, ["C", "plain"])]
    assert "catalog row 3 is not valid UTF-8 and was read as latin-1" in notes[0]


def test_several_legacy_lines_are_named_in_the_plural(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"sku;comment\nA;ok\n" + "B;Très\nC;Écran\n".encode("cp1252"))
    with CsvCatalog(path, legacy_encoding="cp1252").open() as stream:
        list(stream.rows)
        notes = stream.notes
    assert "catalog rows 3, 4 are not valid UTF-8 and were read as cp1252" in notes[0]
    assert "check their accented text" in notes[0]


def test_a_line_neither_utf8_nor_legacy_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"  # 0x81 is undefined in cp1252
    path.write_bytes("sku;comment\nA;été\n".encode() + b"B;\x81\xe9\n")
    with pytest.raises(CatalogError, match=r"c.csv line 3 is neither UTF-8 nor cp1252 "
                                           r"\(byte 0x81\)"):
        read(path, legacy_encoding="cp1252")


def test_a_valid_utf8_file_gives_no_encoding_note(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes("sku;comment\nA;Téléphone\n".encode())
    with CsvCatalog(path, legacy_encoding="cp1252").open() as stream:
        assert list(stream.rows) == [(2, ["A", "Téléphone"])] and stream.notes == []


def test_sniff_ignores_delimiters_inside_quotes() -> None:
    assert sniff_delimiter('"a;b","c;d",e\n') == ","
    assert sniff_delimiter("a;b;c\n") == ";"
    assert sniff_delimiter("a\tb\n") == "\t"


def test_unknown_encoding_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("sku\nA\n")
    with pytest.raises(CatalogError, match="unknown catalog encoding"):
        read(path, encoding="klingon-8")
