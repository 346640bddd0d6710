"""Catalog sources: stream a merchant's catalog as (row number, cells) with its header.

A source is opened as a context manager giving a ``CatalogStream``. Rows are numbered as a
spreadsheet shows them: the header is row 1, the first data row is row 2 (a quoted cell
spanning lines is still one row). A catalog that cannot be read at all raises
``CatalogError``: it is never mistaken for an empty catalog, which would zero every offer.
Nor is a file cut short by an interrupted export: a last row without its line break and with
too few fields refuses the file whole (the rows after the cut would look gone and be zeroed).

With a ``legacy_encoding``, a file that is not valid UTF-8 is decoded line by line: what is
valid UTF-8 stays UTF-8 and only the other lines go through the legacy encoding; the rows read
that way are listed in the stream's notes (once its rows have been read).
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, Protocol

from syncer.core.offers import shown_rows
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
    # Filled while the rows are read: what the plan should say about how the file was read.
    notes: list[str] = field(default_factory=list)


class CatalogSource(Protocol):
    def open(self) -> AbstractContextManager[CatalogStream]: ...


@dataclass(frozen=True)
class CsvCatalog:
    """A CSV file: ``;`` or ``,`` (detected, or configured), quoted cells, UTF-8 with or
    without a byte-order mark, or a configured legacy encoding for the lines of older exports
    that are not UTF-8."""

    path: Path
    encoding: str = "utf-8"
    legacy_encoding: str | None = None
    delimiter: str | None = None
    # Read a plain UTF-8 file by splitting its lines (``_open_plain``); False: by the csv
    # module alone (the same rows: the tests compare the two).
    plain: bool = True

    @contextmanager
    def open(self) -> Iterator[CatalogStream]:
        _refuse_spreadsheet(self.path)
        encoding = self._choose_encoding()
        utf8 = self.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
        if utf8 and encoding == self.legacy_encoding and _ascii_compatible(encoding):
            with self._open_mixed() as stream:
                yield stream
            return
        if self.plain and encoding == "utf-8-sig" and _plain(self.path):
            with self._open_plain() as stream:
                yield stream
            return
        try:
            handle = self.path.open("r", encoding=encoding, newline="", errors="strict")
        except OSError as exc:
            raise CatalogError(f"cannot open catalog {self.path}: {exc.strerror}") from None
        with handle:
            header_line = _first_line(handle, self.path, encoding)
            handle.seek(0)
            yield self._stream(handle, header_line, encoding, encoding)

    @contextmanager
    def _open_mixed(self) -> Iterator[CatalogStream]:
        """Lines that are valid UTF-8 are read as UTF-8, the others as the legacy encoding
        (line breaks are the same byte in both, so a line never spans two encodings)."""
        legacy = self.legacy_encoding or ""
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise CatalogError(f"cannot open catalog {self.path}: {exc.strerror}") from None
        with handle:
            lines = _MixedLines(handle, legacy, self.path)
            header_line = next(lines, "")
            chained = _prepend(header_line, lines)
            stream = self._stream(chained, header_line, legacy,
                                  f"UTF-8, the other lines as {legacy}", lines)
            yield stream

    @contextmanager
    def _open_plain(self) -> Iterator[CatalogStream]:
        """A UTF-8 file whose line breaks are all ``\\n`` or ``\\r\\n`` and without NUL (what
        ``_plain`` checked): its lines are decoded a chunk at a time and split by ``str``'s
        own split, the csv module parsing only the lines that hold a quote (a quoted cell may
        span lines). The same rows as the csv module gives, read in a third less time."""
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise CatalogError(f"cannot open catalog {self.path}: {exc.strerror}") from None
        with handle:
            lines = _PlainLines(handle, self.path)
            source = iter(lines)
            header_line = next(source, "")
            if not header_line.strip():
                raise CatalogError(f"catalog {self.path} is empty: no header line")
            delimiter = self.delimiter or sniff_delimiter(header_line)
            try:
                cells = _plain_record(header_line, source, lines, delimiter)
            except csv.Error as exc:
                raise CatalogError(f"catalog {self.path} cannot be parsed at row 1: {exc}"
                                   ) from None
            header = tuple(h.lstrip("\ufeff").strip() for h in cells)
            if not any(header):
                raise CatalogError(f"catalog {self.path} has an empty header line")
            yield CatalogStream(
                header=header,
                rows=_plain_rows(source, lines, delimiter, self.path, len(header),
                                 _ends_with_line_break(self.path)),
                description=f"{self.path} (utf-8-sig, delimiter {delimiter!r})")

    def _stream(self, lines: Iterable[str], header_line: str, encoding: str,
                read_as: str, mixed: _MixedLines | None = None) -> CatalogStream:
        if not header_line.strip():
            raise CatalogError(f"catalog {self.path} is empty: no header line")
        if "\x00" in header_line:
            raise CatalogError(
                f"catalog {self.path} has NUL bytes in its header line: it looks like "
                "UTF-16 (\"Unicode text\") or a binary file, not CSV; save it as CSV UTF-8")
        delimiter = self.delimiter or sniff_delimiter(header_line)
        reader = csv.reader(lines, delimiter=delimiter, quotechar='"', strict=False)
        header = tuple(_read_record(reader, self.path, encoding, 1) or ())
        header = tuple(h.lstrip("\ufeff").strip() for h in header)
        if not any(header):
            raise CatalogError(f"catalog {self.path} has an empty header line")
        notes: list[str] = []
        return CatalogStream(
            header=header,
            rows=_rows(reader, self.path, encoding, len(header), _ends_with_line_break(self.path),
                       mixed, notes),
            description=f"{self.path} ({read_as}, delimiter {delimiter!r})",
            notes=notes,
        )

    def _choose_encoding(self) -> str:
        encoding = self.encoding.lower().replace("_", "-")
        if encoding in ("utf-8", "utf8"):
            encoding = "utf-8-sig"  # strips a BOM when present, reads plain UTF-8 otherwise
        try:
            # str.encode refuses codecs that are not text encodings (rot13, base64...), which
            # codecs.lookup alone accepts.
            "sku".encode(encoding)
            if self.legacy_encoding:
                "sku".encode(self.legacy_encoding)
        except LookupError as exc:
            raise CatalogError(f"unknown catalog encoding: {exc}") from None
        if self.legacy_encoding and not _decodes(self.path, encoding):
            return self.legacy_encoding
        return encoding


class _MixedLines:
    """The lines of a binary file, each decoded as UTF-8 when it is valid UTF-8 and as the
    legacy encoding otherwise; ``legacy`` holds the (1-based) numbers of the latter."""

    def __init__(self, handle: IO[bytes], encoding: str, path: Path) -> None:
        self.path = path
        self._lines = iter(handle)
        self.encoding = encoding
        self.number = 0
        self.legacy: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = next(self._lines)
        self.number += 1
        if self.number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.legacy.add(self.number)
            try:
                return raw.decode(self.encoding)
            except UnicodeDecodeError as exc:
                raise CatalogError(
                    f"catalog {self.path} line {self.number} is neither UTF-8 nor {self.encoding} "
                    f"(byte 0x{exc.object[exc.start:exc.start + 1].hex()})") from None


def _plain(path: Path) -> bool:
    """Whether the file can be read by ``_PlainLines``: no NUL (the csv module refuses it)
    and no carriage return but before a line feed (the csv module ends a record there too).
    One pass over the bytes at the speed of memchr; whether they are UTF-8 is found while
    they are decoded, and told as the csv module's reader tells it."""
    carried = b""  # a chunk's last byte when it is a carriage return
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK * 4):
                chunk = carried + chunk
                carried = chunk[-1:] if chunk.endswith(b"\r") else b""
                body = chunk[:-1] if carried else chunk
                if b"\x00" in body or (b"\r" in body and
                                       body.count(b"\r") != body.count(b"\r\n")):
                    return False
    except OSError:
        return False  # the csv module's reader says what is wrong
    return not carried


class _PlainLines:
    """The lines of a file ``_plain`` accepted, decoded a chunk at a time, without their
    line feed (a carriage return before it is kept, as the csv module reads it). ``last``
    is set while the file's last line is the one read and it has no line break."""

    def __init__(self, handle: IO[bytes], path: Path) -> None:
        self.handle = handle
        self.path = path
        self.last = False

    def __iter__(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
        rest = ""
        count = 0  # lines yielded
        try:
            while chunk := self.handle.read(_CHUNK * 4):
                text = decoder.decode(chunk)
                joined = rest + text
                lines = joined.split("\n")
                rest = lines.pop()
                # joined, not text: a carriage return held in the line left open by the
                # previous chunk is only known to be lone once this chunk is read
                if "\x00" in text or ("\r" in joined and _lone_return(joined, len(rest))):
                    raise CatalogError(f"catalog {self.path} changed while it was read (it "
                                       "now holds NUL bytes or lone carriage returns): "
                                       "nothing was planned from it; plan again")
                count += len(lines)
                yield from lines
            rest += decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise _encoding_error(self.path, "utf-8-sig", count + 1, exc) from None
        if rest:
            self.last = True
            yield rest


def _lone_return(text: str, rest: int) -> bool:
    """Whether the text, but its last ``rest`` characters (a line still open), holds a
    carriage return that is not before a line feed."""
    body = text[:len(text) - rest]
    return body.count("\r") != body.count("\r\n")


def _plain_record(line: str, source: Iterator[str], lines: _PlainLines,
                  delimiter: str) -> list[str]:
    """The cells of the record that starts with this line: split at the delimiter, or, when
    the line holds a quote, parsed by the csv module with the lines its quoted cells span
    (and a line longer than a cell may be, which it refuses)."""
    if '"' not in line and len(line) <= MAX_CELL:
        if line.endswith("\r"):
            line = line[:-1]
        return line.split(delimiter) if line else []

    def continued() -> Iterator[str]:
        yield line if lines.last else line + "\n"
        for more in source:
            yield more if lines.last else more + "\n"

    return next(csv.reader(continued(), delimiter=delimiter, quotechar='"', strict=False), [])


def _plain_rows(source: Iterator[str], lines: _PlainLines, delimiter: str, path: Path,
                width: int, ends_with_line_break: bool) -> Iterator[tuple[int, list[str]]]:
    """``_rows`` of a plain file: the same rows, numbers and refusals."""
    row = 1
    held: list[str] | None = None
    split = str.split
    for line in source:
        row += 1
        if '"' in line or not line or len(line) > MAX_CELL:
            try:
                record = _plain_record(line, source, lines, delimiter)
            except csv.Error as exc:
                raise CatalogError(f"catalog {path} cannot be parsed at row {row}: {exc}"
                                   ) from None
        elif line[-1] == "\r":  # a Windows line break
            record = split(line[:-1], delimiter) if len(line) > 1 else []
        else:
            record = split(line, delimiter)
        if held is not None and (held[0].strip() or "".join(held).strip()):
            if len(held) != width:
                _check_quotes(held, path, row - 1, width)
            yield row - 1, held
        held = record if record else None
    if held is not None and _last_row(held, path, row, width, ends_with_line_break):
        yield row, held


def _prepend(first: str, rest: Iterator[str]) -> Iterator[str]:
    if first:
        yield first
    yield from rest


def _ascii_compatible(encoding: str) -> bool:
    """Whether the encoding writes ASCII (and so the line break) as UTF-8 does."""
    try:
        return "sku;\n".encode(encoding) == b"sku;\n" and codecs.lookup(encoding).name not in (
            "utf-16", "utf-32", "utf-7")
    except (LookupError, UnicodeError):
        return False


def _ends_with_line_break(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            if fh.tell() == 0:
                return True
            fh.seek(-1, 2)
            return fh.read(1) in (b"\n", b"\r")
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from None


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


def is_utf8(path: Path) -> bool:
    """Whether the whole file decodes as UTF-8 (a BOM allowed): `syncer init` asks, to
    configure a legacy encoding only for an export that needs one."""
    return _decodes(path, "utf-8-sig")


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
            # a multi-byte character cut by the file's end: its line, as for any bad byte
            # (not the row the reader was at, which a quoted cell over lines puts earlier)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        return line, exc.object[exc.start:exc.start + 1].hex()
    except OSError:
        return None
    return None


# The first bytes of a spreadsheet saved as such, not as CSV: a ZIP archive (.xlsx, .ods,
# .numbers) and the older binary Excel workbook (.xls).
SPREADSHEET_MAGIC: Final = ((b"PK\x03\x04", "an .xlsx, .ods or other ZIP file"),
                            (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an .xls workbook"))


def _refuse_spreadsheet(path: Path) -> None:
    """A workbook is refused as such, whatever its name, not read as text that happens not
    to decode (which would send the seller after an encoding setting)."""
    try:
        with path.open("rb") as handle:
            start = handle.read(8)
    except OSError:
        return  # reported by the open that follows, with the reason
    for magic, what in SPREADSHEET_MAGIC:
        if start.startswith(magic):
            raise CatalogError(
                f"catalog {path} is a spreadsheet ({what}), not a CSV file: export it as CSV "
                "(UTF-8, or your spreadsheet's default) and point catalog.path or --catalog "
                "at that")


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


def _rows(reader: Iterator[list[str]], path: Path, encoding: str, width: int,
          ends_with_line_break: bool, mixed: _MixedLines | None,
          notes: list[str]) -> Iterator[tuple[int, list[str]]]:
    """The data rows, each yielded once the next record is read (the last one is checked for
    a cut), blank ones left out. One loop over the reader: a row costs what the csv module
    costs, and little more (a million offers are planned in a few csv passes)."""
    row = 1  # the row of the last record read
    legacy_rows: list[int] = []
    line = getattr(reader, "line_num", 0)
    held: list[str] | None = None  # the record read before the last
    while True:
        try:
            for record in reader:
                row += 1
                if mixed is not None:
                    first, line = line + 1, getattr(reader, "line_num", 0)
                    if any(n in mixed.legacy for n in range(first, line + 1)):
                        legacy_rows.append(row)
                if held is not None and (held[0].strip() or "".join(held).strip()):
                    if len(held) != width:
                        _check_quotes(held, path, row - 1, width)
                    yield row - 1, held
                held = record if record else None
            break
        except UnicodeDecodeError as exc:
            raise _encoding_error(path, encoding, row + 1, exc) from None
        except csv.Error as exc:
            raise CatalogError(f"catalog {path} cannot be parsed at row {row + 1}: {exc}"
                               ) from None
    if held is not None and _last_row(held, path, row, width, ends_with_line_break):
        yield row, held
    if legacy_rows and mixed is not None:
        notes.append(_legacy_note(legacy_rows, mixed))


def _last_row(held: list[str], path: Path, row: int, width: int,
              ends_with_line_break: bool) -> bool:
    """Whether the file's last record is a row (not a blank one). A last line without its
    line break and with too few fields refuses the file: an export interrupted mid-row,
    where what came after the cut is missing, not gone."""
    if not (held[0].strip() or "".join(held).strip()):
        return False
    if len(held) != width:
        _check_quotes(held, path, row, width)
    if not ends_with_line_break and len(held) < width:
        raise CatalogError(
            f"catalog {path} ends in the middle of row {row}: the last line has no line "
            f"break and {len(held)} fields instead of {width}, so the export was "
            "probably cut short; nothing was planned from it. Export the catalog again")
    return True


def _check_quotes(record: list[str], path: Path, row: int, width: int) -> None:
    if any("\n" in cell or "\r" in cell for cell in record):
        # A quote left open swallows the lines after it: their rows would look gone (and
        # their offers zeroed) while nothing says which SKUs they were.
        raise CatalogError(
            f"catalog {path} cannot be parsed at row {row}: a quoted cell runs over "
            f"several lines and the row has {len(record)} fields instead of {width}; "
            "a quote (\") is probably not closed")


def _legacy_note(rows: list[int], mixed: _MixedLines) -> str:
    one = len(rows) == 1
    return (f"catalog {'row' if one else 'rows'} {shown_rows(rows, 20)} "
            f"{'is' if one else 'are'} not valid UTF-8 and {'was' if one else 'were'} read as "
            f"{mixed.encoding} (the other rows as UTF-8); check {'its' if one else 'their'} "
            "accented text, or save the export as UTF-8")


csv.field_size_limit(MAX_CELL)
