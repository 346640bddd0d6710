"""The plain reader of a UTF-8 catalog (lines split by ``str``, the csv module only for the
lines that hold a quote) gives exactly what the csv module gives: the same header, rows, row
numbers, description, and the same refusals. Over any file hypothesis makes of the characters
that matter to a CSV reader (delimiters, quotes, line breaks, spaces, a BOM, invisible and
accented characters), and over the edge cases one by one."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncer.catalog.files import CatalogStream, CsvCatalog, _plain
from syncer.errors import CatalogError

CELL = st.lists(st.sampled_from(
    ["a", "B", "7", " ", ";", ",", '"', '""', "\n", "\r\n", "é", "\u200b", "\ufeff", "\t",
     "x" * 40]), max_size=8).map("".join)
LINE_END = st.sampled_from(["\n", "\r\n"])


def read(path: Path, plain: bool, **options: str) -> tuple[object, ...]:
    """What a planner sees of the file: everything, or the refusal (``options``: the
    CsvCatalog's encoding, legacy_encoding or delimiter)."""
    source = CsvCatalog(path=path, plain=plain, **options)  # type: ignore[arg-type]
    rows: list[tuple[int, list[str]]] = []
    try:
        with source.open() as stream:
            rows.extend(stream.rows)
            return ("ok", stream.header, rows, stream.description, stream.notes)
    except CatalogError as exc:
        return ("refused", str(exc), rows)


def same(path: Path) -> tuple[object, ...]:
    plain, csv_module = read(path, True), read(path, False)
    if plain[0] == csv_module[0] == "refused":  # nothing is planned: the rows read before
        assert plain[1] == csv_module[1]        # the refusal do not matter, its words do
    else:
        assert plain == csv_module
    return plain


def cell_text(cell: str, quote: bool) -> str:
    return '"' + cell.replace('"', '""') + '"' if quote else cell


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    end = draw(LINE_END)
    delimiter = draw(st.sampled_from([";", ","]))
    header = delimiter.join(draw(st.lists(st.sampled_from(["sku", "ean", "price", " stock "]),
                                          min_size=1, max_size=4)))
    lines = [header]
    for _ in range(draw(st.integers(0, 8))):
        cells = draw(st.lists(CELL, max_size=5))
        quoted = draw(st.lists(st.booleans(), min_size=len(cells), max_size=len(cells)))
        lines.append(delimiter.join(cell_text(c, q) for c, q in zip(cells, quoted,
                                                                     strict=True)))
    text = end.join(lines) + (end if draw(st.booleans()) else "")
    bom = "\ufeff" if draw(st.booleans()) else ""
    return (bom + text).encode("utf-8")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=csv_files())
def test_the_plain_reader_reads_any_file_as_the_csv_module_does(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "catalog.csv"
        path.write_bytes(data)
        same(path)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_the_plain_reader_reads_any_bytes_as_the_csv_module_does(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "catalog.csv"
        path.write_bytes(b"sku;stock\n" + data)
        same(path)


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "catalog.csv"
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize("text", [
    "sku;stock\nA;1\nB;2\n",
    "sku;stock\r\nA;1\r\nB;2\r\n",
    "\ufeffsku;stock\nA;1\n",
    "sku;stock\n\nA;1\n;\n \nB;2",
    'sku;comment\nA;"two\nlines"\nB;"a ""quoted"" word"\n',
    'sku;comment\r\nA;"two\r\nlines"\r\nB;x\r\n',
    'sku;comment\nA;"never closed\nB;1\nC;2\n',
    "sku;stock;price\nA;1;10\nB;2",           # cut short: refused
    'sku;comment\nA;"open at the end',
    "sku;stock\nA;1;extra\nB\n",
    'sku;"multi\nline header"\nA;1\n',
    'sku;comment\nA;x"y;"z\nB;1\n',            # a quote inside a cell, then a quoted cell
])
def test_edge_cases_read_the_same(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert _plain(path)  # these are read by the plain reader, not handed to the csv module
    same(path)


@pytest.mark.parametrize("data", [
    b"sku;stock\nA;1\rB;2\n",      # a carriage return alone ends a record for the csv module
    b"sku;stock\nA;\x001\n",        # NUL: the csv module refuses it
    b"sku;stock\nA;1\r",            # ends on a carriage return
])
def test_files_the_plain_reader_does_not_take_are_read_by_the_csv_module(
        tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, data)
    assert not _plain(path)
    same(path)


def test_a_file_that_is_not_utf8_is_refused_as_the_csv_module_refuses_it(tmp_path: Path
                                                                          ) -> None:
    path = write(tmp_path, b"sku;stock\n" + b"A;1\n" * 3 + b"B;\xe91\n")
    assert _plain(path)  # the bytes are found while they are decoded
    result = same(path)
    assert result[0] == "refused" and "not valid utf-8 near row 5 (byte 0xe9)" in str(result[1])


def test_a_file_read_in_several_chunks_keeps_the_lines_across_chunk_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import syncer.catalog.files as files

    monkeypatch.setattr(files, "_CHUNK", 7)  # chunk ends fall inside lines and CRLF pairs
    rows = "".join(f'SKU-{n};"c{n}\r\nmore";{n}\r\n' if n % 3 == 0 else f"SKU-{n};é{n};{n}\r\n"
                   for n in range(40))
    path = write(tmp_path, "sku;comment;stock\r\n" + rows)
    assert _plain(path)
    result = same(path)
    assert result[0] == "ok"
    got: Sequence[tuple[int, list[str]]] = result[2]  # type: ignore[assignment]
    assert [r for r, _ in got] == list(range(2, 42))
    assert got[3] == (5, ["SKU-3", "c3\r\nmore", "3"])


def test_plain_stream_is_a_catalog_stream(tmp_path: Path) -> None:
    path = write(tmp_path, "sku;stock\nA;1\n")
    with CsvCatalog(path=path).open() as stream:
        assert isinstance(stream, CatalogStream)
        assert list(stream.rows) == [(2, ["A", "1"])]


@pytest.mark.parametrize("data", [b"sku;stock\nA;1\rB;2\nC;3\n", b"sku;stock\nA;\x001\n"])
def test_a_file_that_changes_after_its_check_is_refused_not_misread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    """Rewritten between the check and the read (an export landing mid-plan), with what the
    plain reader cannot split: nothing is planned from it."""
    import syncer.catalog.files as files

    path = write(tmp_path, data)
    monkeypatch.setattr(files, "_plain", lambda _path: True)
    with pytest.raises(CatalogError, match="changed while it was read"), \
            CsvCatalog(path=path).open() as stream:
        list(stream.rows)


@pytest.mark.parametrize("plain", [True, False])
@pytest.mark.parametrize("line_break", [b"\n", b"\r"])  # \r alone: the csv module's reader
def test_a_file_not_utf8_past_its_first_blocks_is_refused_never_read_short(
        tmp_path: Path, plain: bool, line_break: bytes) -> None:
    """A bad byte far into the file (past what is decoded ahead of the first rows) refuses
    the file whichever reader reads it: the rows after it are not gone, and their offers
    must not be zeroed."""
    rows = b"".join(b"SKU-%05d;1%s" % (n, line_break) for n in range(20_000))
    path = write(tmp_path, b"sku;stock" + line_break + rows + b"BAD;\xe9" + line_break)
    with pytest.raises(CatalogError, match="is not valid utf-8 near row"), \
            CsvCatalog(path=path, plain=plain).open() as stream:
        list(stream.rows)
