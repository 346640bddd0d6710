"""A batch task's catalog: the CSV ``POST /ws/listings`` sends, read as Back Market does
(its header's known columns, each row's non-empty cells and its shape problem), or refused
as a whole (``CatalogError``: the task fails).

An empty cell is read as a column the row does not give, so the listing keeps that field's
value (and a create lacks it). What Back Market does with an empty cell is not known (clear
the field, keep it, refuse the row): the engine never sends one, so this reading is a choice
of the emulator, not a fact to rely on.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Final

from syncer.emulator.changes import SINGLE_UPDATE_FIELDS
from syncer.emulator.model import Task
from syncer.emulator.products import PRODUCT_COLUMNS

__all__ = ["BATCH_COLUMNS", "CatalogError", "count_rows", "read_catalog"]

# Batch CSV columns the emulator understands; any other column (product-creation columns of
# the back-office template: title, brand, image1...) is ignored, as the real endpoint does for
# products it already knows.
BATCH_COLUMNS: Final[frozenset[str]] = SINGLE_UPDATE_FIELDS | PRODUCT_COLUMNS | {
    "sku",
    "product_id",
    "backmarket_id",
    "ean",
    "grade",
    "state",
    "max_price",
    "deee",
}



class CatalogError(Exception):
    """The batch catalog cannot be read at all: the task fails (action_status 8)."""


def _records(catalog: str, delimiter: str, quotechar: str, *, strict: bool) -> Iterator[list[str]]:
    reader = csv.reader(
        io.StringIO(catalog, newline=""), delimiter=delimiter, quotechar=quotechar, strict=strict
    )
    for record in reader:
        if any(cell.strip() for cell in record):
            yield record


def count_rows(catalog: str, delimiter: str, quotechar: str) -> int:
    """Data rows of a catalog (its header excluded), counted before it is processed."""
    try:
        return max(0, sum(1 for _ in _records(catalog, delimiter, quotechar, strict=False)) - 1)
    except csv.Error:
        return max(0, sum(1 for line in catalog.splitlines() if line.strip()) - 1)


def read_catalog(task: Task) -> list[tuple[dict[str, str], str | None]]:
    """The rows of a task's catalog as known, non-empty cells, each with its shape problem."""
    try:
        task.catalog.encode(task.encoding)
    except UnicodeEncodeError as exc:
        raise CatalogError(
            f"the catalog cannot be encoded as {task.encoding}: {exc.reason} at character"
            f" {exc.start}"
        ) from None
    except LookupError:
        raise CatalogError(f"unknown encoding {task.encoding!r}") from None
    records: list[list[str]] = []
    try:
        records.extend(_records(task.catalog, task.delimiter, task.quotechar, strict=True))
    except csv.Error as exc:
        raise CatalogError(
            f"the catalog is not valid CSV after data row {len(records)}: {exc}"
        ) from None
    if not records:
        raise CatalogError("the catalog is empty")
    header = [cell.replace("\ufeff", "").strip().lower() for cell in records[0]]
    if "sku" not in header:
        raise CatalogError(
            f"column sku not found in the catalog header (delimiter {task.delimiter!r})"
        )
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        raise CatalogError(f"column(s) repeated in the catalog header: {', '.join(repeated)}")
    rows: list[tuple[dict[str, str], str | None]] = []
    for record in records[1:]:
        cells = {
            name: value.strip()
            for name, value in zip(header, record, strict=False)
            if name in BATCH_COLUMNS and value.strip()
        }
        problem = None
        if len(record) != len(header):
            problem = f"the row has {len(record)} fields, the header {len(header)}"
        rows.append((cells, problem))
    return rows
