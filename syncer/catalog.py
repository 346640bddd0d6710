"""Catalog sources: stream a merchant's catalog as (row number, cells) with its header.

A source is opened as a context manager giving a ``CatalogStream``. Rows are numbered as a
spreadsheet shows them: the header is row 1, the first data row is row 2 (a quoted cell
spanning lines is still one row). A catalog that cannot be read at all raises
``CatalogError``: it is never mistaken for an empty catalog, which would zero every offer.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Protocol

from syncer.errors import CatalogError

DELIMITERS: Final = (";", ",", "\t", "|")
# A cell may hold a long description; beyond this the file is treated as unreadable.
MAX_CELL: Final = 16 * 1024 * 1024
_CHUNK: Final = 1 << 20


@dataclass
class CatalogStream:
    header: tuple[str, ...]
    rows: Iterator[tuple[int, list[str]]]
    description: str


class CatalogSource(Protocol):
    def open(self) -> AbstractContextManager[CatalogStream]: ...


@dataclass(frozen=True)
class CsvCatalog:
    """A CSV file: ``;`` or ``,`` (detected, or configured), quoted cells, UTF-8 with or
    without a byte-order mark, or a configured legacy encoding for older exports."""

    path: Path
    encoding: str = "utf-8"
    legacy_encoding: str | None = None
    delimiter: str | None = None

    @contextmanager
    def open(self) -> Iterator[CatalogStream]:
        encoding = self._choose_encoding()
        try:
            handle = self.path.open("r", encoding=encoding, newline="", errors="strict")
        except OSError as exc:
            raise CatalogError(f"cannot open catalog {self.path}: {exc.strerror}") from None
        with handle:
            header_line = _first_line(handle, self.path, encoding)
            if not header_line.strip():
                raise CatalogError(f"catalog {self.path} is empty: no header line")
            if "\x00" in header_line:
                raise CatalogError(
                    f"catalog {self.path} has NUL bytes in its header line: it looks like "
                    "UTF-16 (\"Unicode text\") or a binary file, not CSV; save it as CSV UTF-8")
            delimiter = self.delimiter or sniff_delimiter(header_line)
            handle.seek(0)
            reader = csv.reader(handle, delimiter=delimiter, quotechar='"', strict=False)
            header = tuple(_read_record(reader, self.path, encoding, 1) or ())
            header = tuple(h.lstrip("\ufeff").strip() for h in header)
            if not any(header):
                raise CatalogError(f"catalog {self.path} has an empty header line")
            yield CatalogStream(
                header=header,
                rows=_rows(reader, self.path, encoding, len(header)),
                description=f"{self.path} ({encoding}, delimiter {delimiter!r})",
            )

    def _choose_encoding(self) -> str:
        encoding = self.encoding.lower().replace("_", "-")
        if encoding in ("utf-8", "utf8"):
            encoding = "utf-8-sig"  # strips a BOM when present, reads plain UTF-8 otherwise
        try:
            codecs.lookup(encoding)
            if self.legacy_encoding:
                codecs.lookup(self.legacy_encoding)
        except LookupError as exc:
            raise CatalogError(f"unknown catalog encoding: {exc}") from None
        if self.legacy_encoding and not _decodes(self.path, encoding):
            return self.legacy_encoding
        return encoding


def sniff_delimiter(header_line: str) -> str:
    """The candidate delimiter that occurs most often outside quotes in the header."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _decodes(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from None
    return True


def _first_line(handle: IO[str], path: Path, encoding: str) -> str:
    try:
        return handle.readline()
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, encoding, 1, exc) from None


def _undecodable(path: Path, encoding: str) -> tuple[int, str] | None:
    """The line and the hex of the first byte that does not decode (text is decoded a chunk
    ahead of the rows read: the row being read when it fails is not where the byte is)."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    line = 1
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    # exc.object: bytes held from the previous chunk (no line break) + chunk
                    return (line + exc.object[:exc.start].count(b"\n"),
                            exc.object[exc.start:exc.start + 1].hex())
                line += chunk.count(b"\n")
    except OSError:
        return None
    return None


def _encoding_error(path: Path, encoding: str, row: int, exc: UnicodeDecodeError) -> CatalogError:
    byte = exc.object[exc.start:exc.start + 1].hex() if exc.object else "?"
    found = _undecodable(path, encoding)
    if found is not None:
        row, byte = found
    return CatalogError(
        f"catalog {path} is not valid {encoding.replace('-sig', '')} near row {row} "
        f"(byte 0x{byte}); save it as UTF-8 or set catalog.legacy_encoding "
        "(for example \"cp1252\" for older Excel exports)"
    )


def _read_record(reader: Iterator[list[str]], path: Path, encoding: str,
                 row: int) -> list[str] | None:
    try:
        return next(reader)
    except StopIteration:
        return None
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, encoding, row, exc) from None
    except csv.Error as exc:
        raise CatalogError(f"catalog {path} cannot be parsed at row {row}: {exc}") from None


def _rows(reader: Iterator[list[str]], path: Path, encoding: str,
          width: int) -> Iterator[tuple[int, list[str]]]:
    row = 1
    while True:
        row += 1
        record = _read_record(reader, path, encoding, row)
        if record is None:
            return
        if not record or not any(cell.strip() for cell in record):
            continue  # a blank line names no SKU: nothing to offer, nothing to report
        if len(record) != width and any("\n" in cell or "\r" in cell for cell in record):
            # A quote left open swallows the lines after it: their rows would look gone (and
            # their offers zeroed) while nothing says which SKUs they were.
            raise CatalogError(
                f"catalog {path} cannot be parsed at row {row}: a quoted cell runs over "
                f"several lines and the row has {len(record)} fields instead of {width}; "
                "a quote (\") is probably not closed")
        yield row, record


csv.field_size_limit(MAX_CELL)
