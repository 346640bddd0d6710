"""Files a hostile or careless seller's export could hold, read by the plain reader and by
the csv module alone: the same header, rows, row numbers, description, notes and refusals.
The two differences found (an encoding refusal's row, a carriage return a rewrite left
lone across a chunk end) are fixed; the rest are pinned so that they stay the same. Then
whole plans: a damaged catalog plans the same whichever reader reads it."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

import syncer.catalog.files as files
from syncer.catalog.files import CsvCatalog
from syncer.config.settings import Settings, load_settings
from syncer.core.snapshot import Ack
from syncer.errors import CatalogError
from syncer.pipeline.planner import catalog_source, make_plan
from syncer.state.store import StateStore
from tests.conftest import HEADER, TOKEN, catalog_row, write_catalog, write_config
from tests.test_catalog_plain import read


def same(path: Path, **options: str) -> tuple[object, ...]:
    plain, csv_module = read(path, True, **options), read(path, False, **options)
    if plain[0] == csv_module[0] == "refused":  # only the refusal's words matter then
        plain, csv_module = plain[:2], csv_module[:2]
    assert plain == csv_module
    return plain


def write(tmp_path: Path, data: str | bytes) -> Path:
    path = tmp_path / "catalog.csv"
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(("data", "line"), [
    (b'sku;c\nA;"x\ny"\nB;\xc3', 4),  # a character cut by the file's end, after a cell on 2 lines
    (b'"sku\nx";stock\xc3', 2),       # the same in a header on two lines
])
def test_a_character_cut_by_the_end_is_refused_at_its_line_by_both_readers(
        tmp_path: Path, data: bytes, line: int) -> None:
    """It was refused at the plain reader's line but at the csv module's row (earlier by the
    lines a quoted cell spans): the same words now, the line, as for a bad byte mid-file."""
    result = same(write(tmp_path, data))
    assert result[0] == "refused" and f"near row {line} (byte 0xc3)" in str(result[1])


def test_a_lone_carriage_return_held_over_a_chunk_end_is_refused_not_split_into_a_cell(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file rewritten after ``_plain`` checked it, with a lone carriage return in the line
    a chunk leaves open and none in the next chunk: it was read as one row ``AA;1\\rB``
    (the csv module reads two); it is now refused as changed."""
    path = write(tmp_path, b"sku;stock\nAA;1\rB\n")
    monkeypatch.setattr(files, "_plain", lambda _path: True)
    monkeypatch.setattr(files, "_CHUNK", 1)  # 4-byte chunks: ";1\rB" then "\n"
    with pytest.raises(CatalogError, match="changed while it was read"), \
            CsvCatalog(path=path).open() as stream:
        list(stream.rows)


@pytest.mark.parametrize(("data", "options"), [
    ("sku,stock\nA,1\n", {"delimiter": ","}),
    ("sku;stock\nA,1;2\n", {"delimiter": ","}),        # configured, not the header's
    ("sku,stock\nA;1\n", {}),                           # the rows' delimiter is not the header's
    ("sku\tstock\nA\t1\r\nB\t\"x\ty\"\n", {}),
    ("sku|stock\nA|1\n", {"delimiter": "|"}),
    ('sku;c\nA;"x;y"\n', {}),
    ('sku;c\nA;12" screen\nB;2\n', {}),
    ('sku;c\nA;"a"b\n', {}),
    ('sku;c\n"";1\n', {}),
    ('""sku;c\nA;1\n', {}),
    ('sku;c\nA;"' + "x\n" * 50 + '"\nB;1\n', {}),
    ('sku;c\nA;"x\ny', {}),
    ('sku;c\nA;"x\ny\n', {}),
    ('sku;c\n"\nB;1\n', {}),
    ('sku;c\n"', {}),
    ('sku;c\n"\n', {}),
    ('sku;c\nA;"x\\"y"\n', {}),
    ("sku;c\r\nA;1\nB;2\r\n", {}),
    ('sku;c\r\nA;"x\r\ny"\r\n', {}),
    ("sku;c\nA;1\n\r\nB;2\n", {}),
    ("sku;c\nA;1\n" + "\n" * 20, {}),
    ("sku;c\nA;1\n" + "\r\n" * 20, {}),
    ("sku;c\n \n;\n\t\n\" \";\nA;1\n", {}),
    ("", {}),
    ("\n", {}),
    ("\r\n", {}),
    ("\ufeff", {}),
    ("\ufeff\n", {}),
    ("\ufeff\ufeffsku;c\nA;1\n", {}),
    ("sku;c", {}),
    ("sku;c\n", {}),
    ("sku;c\n\ufeffA;1\n", {}),                        # a BOM mid-file
    ("sku;c\nA\u200b;\u00a01\ufeff\n", {}),
    ("sku;c\nA\U0001f600;1\n", {}),
    ("sku;c\nA;1\x0bB;2\x1cC\x85D\u2028E\n", {}),        # what str.splitlines would split
    ("sku;c;d\nA;1", {}),
    ("sku;c;d\nA;1;2;3", {}),
    ('sku;c;d\nA;"1;2', {}),
    ('sku;c;d\nA;"1\n2', {}),
    (b"sku;c\nA;\xc3", {}),
    (b"sku;c\nA;\xe9\n", {"legacy_encoding": "cp1252"}),
    ("sku;c\nA;\u00e9\n", {"legacy_encoding": "cp1252"}),
    (b"sku;c\nA;\x81\n", {"legacy_encoding": "cp1252"}),
])
def test_hostile_files_read_the_same(tmp_path: Path, data: str | bytes,
                                     options: dict[str, str]) -> None:
    same(write(tmp_path, data), **options)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
@pytest.mark.parametrize("data", [
    "sku;c\nA;\U0001f600\u00e9;\U0001f600\nB;\"\U0001f600\r\n\u00e9\"\r\n".encode(),
    b"sku;c\nA;\xf0\x9f\x98\x80\nB;\xf0\x9f\nC;1\n",  # a character cut mid-file
    b"sku;c\nA;1\nB;\xed\xa0\x80\n",                  # a surrogate: not UTF-8
    b"\xef\xbb\xbfsku;c\nA;1\r\nB;\xe9\r\n",
])
def test_chunk_ends_anywhere_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           chunk: int, data: bytes) -> None:
    monkeypatch.setattr(files, "_CHUNK", chunk)
    same(write(tmp_path, data))


@pytest.mark.parametrize("data", [
    "sku;c\nA;" + "x" * 10 + "\n",
    "sku;c\nA;" + "x" * 11 + "\n",
    "sku;c\nA;" + "x" * 9 + ";" + "y" * 9 + "\n",       # a long line of short cells
    'sku;c\nA;"' + "x" * 11 + '"\n',
    'sku;c\nA;"' + "x\n" * 6 + '"\n',
    "sku;c\nA;" + "x" * 10 + "\r\n",
    "s" * 11 + ";c\nA;1\n",
    "sku;c\n" + "x" * 11,
])
def test_cells_past_the_limit_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            data: str) -> None:
    monkeypatch.setattr(files, "MAX_CELL", 10)
    limit = csv.field_size_limit(10)
    try:
        same(write(tmp_path, data))
    finally:
        csv.field_size_limit(limit)


@pytest.fixture
def settings(tmp_path: Path, state_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    write_config(tmp_path, state_url=state_url)
    write_catalog(tmp_path / "catalog.csv", [catalog_row(f"F-{i}") for i in range(6)])
    settings = load_settings(tmp_path / "syncer.toml")
    with StateStore.open(settings.state_database_url()) as state:
        plan = make_plan(settings, settings.stores, catalog_source(settings), state)
        for store in plan.stores:
            state.offers.record_acks(store.store, [
                Ack(c.sku, c.target, f"id-{c.sku}", c.source_hash) for c in store.changes])
    return settings


def plan_of(settings: Settings, plain: bool) -> object:
    source = replace(catalog_source(settings), plain=plain)  # type: ignore[type-var]
    try:
        with StateStore.open_readonly(settings.state_database_url()) as state:
            plan = json.loads(make_plan(settings, settings.stores, source, state).to_json())
    except CatalogError as exc:
        return str(exc)
    plan.pop("created_at")  # the clock's second, not what was read
    return plan


ROWS = [catalog_row(f"F-{i}", stock=str(i)) for i in range(6)]


@pytest.mark.parametrize("body", [
    "\n".join(ROWS) + "\n",
    "\r\n".join(ROWS),                                                  # no final break
    "\n".join(ROWS[:5]) + "\n" + ROWS[5][:20],                          # cut mid-row
    "\n".join(ROWS[:3]) + '\n"' + "\n".join(ROWS[3:]) + "\n",           # a stray quote
    "\n".join(ROWS).replace("F-2;", 'F-2";', 1) + "\n",                # a quote in a SKU
    "\n".join(ROWS).replace("F-1;", "F-1\u200b;", 1) + "\n",
    "\n".join(ROWS).replace("F-4;", "\ufeffF-4;", 1) + "\n",
    "\n".join(ROWS[:2]) + "\n\r\n\n" + "\n".join(ROWS[2:]) + "\n\n\n",
    "\n".join(r.replace(";", ",") if i == 3 else r for i, r in enumerate(ROWS)) + "\n",
    "\n".join(ROWS[:4]) + "\n" + ROWS[4].replace("199.90", '"199.90\n"', 1) + "\n" + ROWS[5],
])
def test_a_damaged_catalog_plans_the_same_whichever_reader_reads_it(
        settings: Settings, body: str) -> None:
    settings.catalog_path().write_bytes((HEADER + "\n" + body).encode("utf-8"))
    assert plan_of(settings, True) == plan_of(settings, False)


PIECES = ["A", ";", ",", "\t", "|", "\n", "\r\n", '"', '""', "\u00e9", "\U0001f600", "\ufeff",
          "xyz", " ", "\u00a0", "\n\n", "\r\n\r\n"]


@examples(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(header=st.sampled_from(["sku;c;d", "sku,c", "sku\tc\td", "sku|c", '"sku";"c"',
                               '"s\nku";c', "\ufeffsku;c"]),
       end=st.sampled_from(["\n", "\r\n"]),
       body=st.lists(st.sampled_from(PIECES), max_size=40).map("".join),
       bad=st.one_of(st.none(), st.tuples(st.integers(-1, 200),
                                          st.sampled_from([b"\xc3", b"\xe9", b"\xf0\x9f"]))),
       options=st.sampled_from([{}, {"delimiter": ";"}, {"delimiter": ","},
                                {"delimiter": "\t"}, {"delimiter": "|"},
                                {"legacy_encoding": "cp1252"}]),
       chunk=st.sampled_from([1, 2, 3, 7, 1 << 20]))
def test_any_delimiter_chunk_and_bad_byte_read_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, header: str, end: str, body: str,
        bad: tuple[int, bytes] | None, options: dict[str, str], chunk: int) -> None:
    """Configured or sniffed delimiters (a tab, a pipe), chunk ends anywhere, a bad byte
    anywhere (or a character cut by the file's end), with or without a legacy encoding."""
    data = (header + end + body).encode("utf-8")
    if bad is not None:
        at = len(data) if bad[0] < 0 else bad[0] % (len(data) + 1)  # -1: cut by the end
        data = data[:at] + bad[1] + data[at:]
    monkeypatch.setattr(files, "_CHUNK", chunk)
    same(write(tmp_path, data), **options)
