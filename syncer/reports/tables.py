"""CSV reports for spreadsheets: cells that a spreadsheet would run as formulas are quoted.

Catalog text (a comment, a title) is data: it is published as it is. But a cell starting with
``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return) in a CSV opened in Excel or
LibreOffice runs as a formula (CSV injection). Every CSV this tool writes goes through
``csv_cell``, which prefixes such text with a quote, as spreadsheets themselves do.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import Final, TextIO

FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A cell safe to open in a spreadsheet: text starting like a formula is quoted."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def write_csv(out: TextIO, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A ``;``-separated report (the delimiter French and German spreadsheets expect)."""
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(header)
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
