"""Rejected catalog rows for the catalog team, and the counts a CI gate reads.

``write_rejections`` writes every rejected row as the seller's export had it (the cells as
read, in the seller's own columns and order) followed by ``rejection_*`` columns: the row
number, the store(s), the column at fault and the reason. One line per row, however many
problems it has, so the file can be fixed in a spreadsheet and its rows pasted back into
the export. CSV goes through ``syncer.reports.tables`` (formula-looking cells quoted, as every CSV
report here); XLSX stores every cell as text, so ``=HYPERLINK(...)`` is text, never a
formula.

The rows are read again from the catalog after planning (a plan keeps no catalog row: a
million of them would not fit), and the second read must see the very rows the plan saw:
``Fingerprinted`` hashes the stream on both reads, and a catalog that changed in between is
an error, never a file of someone else's rows.

Counts: a *rejected row* is a catalog row with at least one rejection; offers Back Market
refused too many runs in a row (quarantined) are not catalog rows and are counted apart.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from syncer.catalog.files import CatalogSource, CatalogStream
from syncer.core.offers import Rejection, visible
from syncer.errors import CatalogError, ConfigError
from syncer.reports.tables import write_csv

if TYPE_CHECKING:
    from openpyxl.cell.cell import Cell
    from openpyxl.styles import Font
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

    from syncer.planning.changes import Notice

REASON_COLUMNS: Final = ("rejection_row", "rejection_store", "rejection_column",
                         "rejection_reason")
FORMATS: Final = (".csv", ".xlsx")
XLSX_CELL_MAX: Final = 32_767  # Excel's limit on the characters of one cell
_SHOWN_VALUE: Final = 80


@dataclass(frozen=True)
class RejectionCounts:
    """Catalog rows rejected (each counted once, whatever its problems and stores), the
    problems themselves, and quarantined offers (Back Market's refusals, not the catalog's)."""

    rows: int
    problems: int
    quarantined: int

    def line(self, limit: int | None = None) -> str:
        text = f"{self.rows} catalog row{'s' if self.rows != 1 else ''} rejected"
        if limit is not None:
            text += f" (limit {limit})"
        if self.quarantined:
            text += (f"; {self.quarantined} quarantined offer"
                     f"{'s' if self.quarantined != 1 else ''} not counted (see `syncer errors`)")
        return text


def count_rejections(rejections: Sequence[Rejection],
                     notices: Sequence[Notice] = ()) -> RejectionCounts:
    return RejectionCounts(rows=len({r.row for r in rejections}), problems=len(rejections),
                           quarantined=sum(1 for n in notices if n.kind == "quarantined"))


def check_format(path: Path) -> str:
    """The report format named by the file's extension (checked before planning)."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"--rejections {path}: the file name must end in .csv or .xlsx "
                          "(the format is taken from it)")
    return suffix[1:]


# --- the catalog read twice, the same both times ---------------------------------------------

@dataclass
class Fingerprinted:
    """A catalog source whose every read hashes its header and rows: two reads with the same
    digest saw the same rows under the same numbers."""

    source: CatalogSource
    digests: list[bytes] = field(default_factory=list)

    @contextmanager
    def open(self) -> Iterator[CatalogStream]:
        digest = hashlib.blake2b(digest_size=16)
        with self.source.open() as stream:
            digest.update("\x1f".join(stream.header).encode("utf-8", "surrogatepass"))

            def rows() -> Iterator[tuple[int, list[str]]]:
                for number, cells in stream.rows:
                    digest.update(f"\x1e{number}\x1d".encode())
                    digest.update("\x1f".join(cells).encode("utf-8", "surrogatepass"))
                    yield number, cells
                self.digests.append(digest.digest())

            yield CatalogStream(stream.header, rows(), stream.description, stream.notes)


# --- the report -------------------------------------------------------------------------------

def write_rejections(path: Path, source: Fingerprinted,
                     rejections: Sequence[Rejection]) -> RejectionCounts:
    """Write the rejected rows of the last read of ``source`` to ``path`` (.csv or .xlsx),
    through a temporary file: a failed or refused write leaves no half report behind."""
    fmt = check_format(path)
    if not source.digests:
        raise CatalogError("the catalog was not read to its end: no rejected rows to write")
    planned = source.digests[-1]
    by_row: dict[int, list[Rejection]] = {}
    for rejection in rejections:
        by_row.setdefault(rejection.row, []).append(rejection)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    os.close(handle)
    try:
        with source.open() as stream:
            header = list(stream.header) + [c for c in REASON_COLUMNS if c not in stream.header]
            lines = _lines(stream, header, by_row)
            if fmt == "csv":
                with open(temp, "w", encoding="utf-8", newline="") as out:
                    write_csv(out, header, lines)
            else:
                _write_xlsx(Path(temp), header, lines)
        if source.digests[-1] != planned:
            raise CatalogError(
                "the catalog changed while the plan was made (its rows read again for the "
                f"rejected rows are not the ones planned); {path} was not written: plan again")
        os.replace(temp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return count_rejections(rejections)


def _lines(stream: CatalogStream, header: Sequence[str],
           by_row: dict[int, list[Rejection]]) -> Iterator[list[str]]:
    """One line per rejected row: the cells as read (padded to the header, cells beyond it
    kept after the rejection columns), the rejection columns filled in."""
    width = len(stream.header)
    at = {name: header.index(name) for name in REASON_COLUMNS}
    found: set[int] = set()
    for number, cells in stream.rows:
        problems = by_row.get(number)
        if problems is None:
            continue
        found.add(number)
        yield _line(cells, width, header, at, number, problems)
    # Rows the plan rejected that this read did not give again (none expected): still listed.
    for number in sorted(set(by_row) - found):
        yield _line([], width, header, at, number, by_row[number])


def _line(cells: list[str], width: int, header: Sequence[str], at: dict[str, int],
          number: int, problems: list[Rejection]) -> list[str]:
    line = (cells[:width] + [""] * (width - len(cells)))
    line += [""] * (len(header) - width)
    stores = list(dict.fromkeys(r.store or "all" for r in problems))
    columns = list(dict.fromkeys(r.column for r in problems if r.column))
    line[at["rejection_row"]] = str(number)
    line[at["rejection_store"]] = ", ".join(stores)
    line[at["rejection_column"]] = ", ".join(columns)
    line[at["rejection_reason"]] = "\n".join(dict.fromkeys(_reason(r) for r in problems))
    return line + cells[width:]


def _reason(r: Rejection) -> str:
    """The rejection without the row and SKU, which the line shows in its own cells."""
    shown = "empty" if r.value in (None, "") else repr(_clip(r.value or ""))
    named = r.field if not r.column or r.column == r.field else \
        f"{r.field} (column {visible(r.column)!r})"
    where = f"[store {r.store}] " if r.store else ""
    return f"{where}{named} is {shown}; expected {r.expected}"


def _clip(value: str) -> str:
    return value if len(value) <= _SHOWN_VALUE else value[:_SHOWN_VALUE - 1] + "…"


def _write_xlsx(path: Path, header: Sequence[str], lines: Iterator[list[str]]) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    sheet = book.create_sheet("rejected rows")
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    sheet.append([_text(sheet, name, font=bold) for name in header])
    for line in lines:
        sheet.append([_text(sheet, cell) for cell in line])
    book.save(path)


def _text(sheet: WriteOnlyWorksheet, value: str, font: Font | None = None) -> Cell:
    """A cell holding text, whatever it looks like: a formula (=, +, -, @) stays text."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    # Control characters cannot be stored in XLSX: shown as <U+XXXX>, as the text reports do.
    text = ILLEGAL_CHARACTERS_RE.sub(lambda m: f"<U+{ord(m.group()):04X}>", value)
    if len(text) > XLSX_CELL_MAX:
        text = text[:XLSX_CELL_MAX - 1] + "…"
    cell = WriteOnlyCell(sheet, value=text)
    cell.data_type = "s"
    if text.startswith(("=", "+", "-", "@")):
        cell.quotePrefix = True  # Excel keeps it text when the cell is edited
    if font is not None:
        cell.font = font
    return cell
