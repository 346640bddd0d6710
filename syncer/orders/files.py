"""The seller's row files of the orders steps (shipments, --accept/--cancel lines,
invoices, serials): read as small CSV files, each row checked on its own, then walked in
file order so that a bad row is reported as parsed and never stops the others.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from stdnum import imei as stdnum_imei

from syncer.catalog.files import sniff_delimiter
from syncer.core.offers import sku_key
from syncer.core.vocabulary import (
    IMEI_DIGITS,
    MAX_SERIAL,
    MAX_SHIPPER,
    MAX_TRACKING_NUMBER,
    MAX_TRACKING_URL,
)
from syncer.errors import ConfigError, FatalApiError, OfferError
from syncer.orders.report import Outcome, StepReport
from syncer.planning.cells import BadValue
from syncer.planning.mapping import Profile, normalise

SHIPMENT_COLUMNS: Final = ("order_id", "carrier", "tracking_number", "tracking_url", "imei",
                           "serial_number", "shipper")


LINE_LIST_COLUMNS: Final = ("order_id", "sku")


INVOICE_COLUMNS: Final = ("order_id", "path")


SERIAL_COLUMNS: Final = ("order_id", "sku", "imei", "serial_number")


PDF_MAGIC: Final = b"%PDF-"


# Our own bound on an invoice upload (Back Market documents none): a PDF invoice is a few
# hundred KiB; a file this big is a mistake (a scan of a whole folder).
MAX_INVOICE_BYTES: Final = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Shipment:
    """One valid row of a shipments file (the order is not checked yet)."""

    row: int
    order_id: int
    carrier: str
    shipper: str
    tracking_number: str
    tracking_url: str | None = None
    imei: str | None = None
    serial_number: str | None = None
    fallback: bool = False  # the carrier is not in the table: the fallback shipper is used


@dataclass(frozen=True, slots=True)
class LineChoice:
    """One row of an --accept or --cancel file: a line named by its order and SKU."""

    row: int
    order_id: int
    sku: str


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    """One valid row of an invoices file: the order and its PDF (the order not checked yet)."""

    row: int
    order_id: int
    path: Path  # resolved against the invoices file's folder
    named: str  # as the file names it
    size: int


@dataclass(frozen=True, slots=True)
class SerialRow:
    """One valid row of a serials file: identifiers for a line named by order and SKU."""

    row: int
    order_id: int
    sku: str  # "" when the order has one line
    imei: str | None
    serial_number: str | None


def check_imei(text: str) -> str:
    """A 15-digit IMEI with a valid Luhn check digit (spaces and dashes allowed), compact."""
    compact = str(stdnum_imei.compact(text.strip()))
    if not compact.isdigit() or len(compact) != IMEI_DIGITS:
        raise BadValue("an IMEI of 15 digits")
    if not stdnum_imei.is_valid(compact):
        raise BadValue("an IMEI with a valid check digit (15th digit, Luhn)")
    return compact


def shipper_for(profile: Profile, carrier: str, fallback_override: str | None
                ) -> tuple[str | None, bool]:
    """Back Market's shipper for a seller's carrier name, and whether the fallback was used.
    ``fallback_override`` (config ``orders.carrier_fallback``) replaces the table's fallback;
    "" means no fallback."""
    found = profile.carriers.get(normalise(carrier))
    if found is not None:
        return found, False
    fallback = profile.carrier_fallback if fallback_override is None else fallback_override
    return (fallback or None), bool(fallback)


def read_table(path: Path, required: Sequence[str], optional: Sequence[str] = ()
               ) -> tuple[list[tuple[int, dict[str, str]]], list[Outcome]]:
    """Rows of a small CSV file (``;`` or ``,``, detected; UTF-8 with or without BOM),
    numbered as a spreadsheet shows them (header = row 1), with the problems of rows that
    cannot be read. A file without the required columns cannot be used at all."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise ConfigError(f"{path} is empty: expected a header line with "
                          + ", ".join(required))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(first))
    header = [cell.strip().lower() for cell in next(reader)]
    missing = [name for name in required if name not in header]
    if missing:
        raise ConfigError(f"{path}: the header has no column {', '.join(missing)}; expected "
                          f"{', '.join((*required, *optional))} (';' or ',' separated)")
    rows: list[tuple[int, dict[str, str]]] = []
    problems: list[Outcome] = []
    for record in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if len(record) > len(header):
            problems.append(Outcome("failed", row=number, field="row", message=(
                f"{len(record)} fields, the header has {len(header)} (check quoting and "
                "delimiters)")))
            continue
        rows.append((number, {name: value.strip() for name, value in zip(header, record,
                                                                         strict=False)}))
    return rows, problems


def _order_id(value: str) -> int | None:
    return int(value) if re.fullmatch(r"\d{1,12}", value) else None


def _expected(value: str | None, expected: str) -> str:
    shown = "empty" if not value else repr(value[:80])
    return f"{shown}; expected {expected}"


def parse_shipments(path: Path, profile: Profile, fallback_override: str | None
                    ) -> tuple[list[Shipment], list[Outcome]]:
    """Every row of a shipments file checked on its own: the valid shipments, and one
    problem per bad row naming the row and the field."""
    rows, problems = read_table(path, ("order_id", "carrier", "tracking_number"),
                                ("tracking_url", "imei", "serial_number", "shipper"))
    shipments: list[Shipment] = []
    first_row: dict[int, int] = {}
    for number, cells in rows:
        order_id = _order_id(cells.get("order_id", ""))

        def bad(name: str, message: str, number: int = number,
                order_id: int | None = order_id) -> None:
            problems.append(Outcome("failed", order_id=order_id, row=number, field=name,
                                    message=message))

        if order_id is None:
            bad("order_id", _expected(cells.get("order_id"), "a Back Market order id (digits)"))
            continue
        if order_id in first_row:
            bad("order_id", f"order {order_id} is also in row {first_row[order_id]} of this "
                            "file: an order is shipped once, from its first valid row; this "
                            "row is not sent")
            continue
        tracking = cells.get("tracking_number", "")
        if not tracking:
            bad("tracking_number", "missing; Back Market needs a tracking number to ship")
            continue
        if len(tracking) > MAX_TRACKING_NUMBER:
            bad("tracking_number", f"at most {MAX_TRACKING_NUMBER} characters")
            continue
        url = cells.get("tracking_url") or None
        if url is not None and (len(url) > MAX_TRACKING_URL
                                or not re.fullmatch(r"https?://[^\s/]+\S*", url)):
            bad("tracking_url", _expected(url, f"an http(s) URL of at most {MAX_TRACKING_URL} "
                                               "characters"))
            continue
        carrier = cells.get("carrier", "")
        given = cells.get("shipper", "")
        if len(given) > MAX_SHIPPER:
            bad("shipper", f"{len(given)} characters; expected Back Market's shipper name of "
                           f"at most {MAX_SHIPPER} characters")
            continue
        if not carrier and not given:
            bad("carrier", "missing; give the carrier's name (see mappings/carriers.toml) or "
                           "Back Market's shipper name in a shipper column")
            continue
        # A shipper cell is sent as written (free text: the spec's list is the known values).
        shipper, fallback = ((given, False) if given
                             else shipper_for(profile, carrier, fallback_override))
        carrier = carrier or given
        if shipper is None:
            bad("carrier", f"{carrier!r} is not in the carrier table and no fallback is "
                           "configured; add it to the carrier table or set a fallback")
            continue
        imei = None
        if cells.get("imei"):
            try:
                imei = check_imei(cells["imei"])
            except BadValue as exc:
                bad("imei", _expected(cells["imei"], exc.expected))
                continue
        serial = cells.get("serial_number") or None
        if serial is not None and len(serial) > MAX_SERIAL:
            bad("serial_number", f"at most {MAX_SERIAL} characters")
            continue
        first_row[order_id] = number
        shipments.append(Shipment(number, order_id, carrier, shipper, tracking, url, imei,
                                  serial, fallback))
    return shipments, problems


def parse_line_choices(path: Path) -> tuple[list[LineChoice], list[Outcome]]:
    """Rows of an --accept or --cancel file: ``order_id`` and ``sku`` of each line."""
    rows, problems = read_table(path, LINE_LIST_COLUMNS)
    choices = []
    for number, cells in rows:
        order_id = _order_id(cells.get("order_id", ""))
        if order_id is None:
            problems.append(Outcome("failed", row=number, field="order_id", message=_expected(
                cells.get("order_id"), "a Back Market order id (digits)")))
        elif not cells.get("sku"):
            problems.append(Outcome("failed", order_id=order_id, row=number, field="sku",
                                    message="missing; the SKU names the line of the order"))
        else:
            choices.append(LineChoice(number, order_id, cells["sku"]))
    return choices, problems


def parse_invoices(path: Path) -> tuple[list[InvoiceRow], list[Outcome]]:
    """Rows of an invoices file (``order_id``, ``path`` of the PDF, relative to the file's
    folder), each checked on its own: the file is there, not empty, not too big, a PDF."""
    rows, problems = read_table(path, INVOICE_COLUMNS)
    found: list[InvoiceRow] = []
    first_row: dict[int, int] = {}
    for number, cells in rows:
        order_id = _order_id(cells.get("order_id", ""))
        named = cells.get("path", "")

        def bad(name: str, message: str, number: int = number,
                order_id: int | None = order_id) -> None:
            problems.append(Outcome("failed", order_id=order_id, row=number, field=name,
                                    message=message))

        if order_id is None:
            bad("order_id", _expected(cells.get("order_id"), "a Back Market order id (digits)"))
            continue
        if order_id in first_row:
            bad("order_id", f"order {order_id} is also in row {first_row[order_id]} of this "
                            "file: an order gets one invoice, from its first valid row; this "
                            "row is not sent")
            continue
        if not named:
            bad("path", "missing; give the invoice's PDF file (relative to this file's folder)")
            continue
        pdf = path.parent / named
        problem = _pdf_problem(pdf)
        if problem is not None:
            bad("path", f"{named}: {problem}")
            continue
        first_row[order_id] = number
        found.append(InvoiceRow(number, order_id, pdf, named, pdf.stat().st_size))
    return found, problems


def _pdf_problem(pdf: Path) -> str | None:
    """Why a file cannot be sent as an invoice, or None."""
    try:
        if not pdf.is_file():
            return "no such file" if not pdf.exists() else "not a file"
        size = pdf.stat().st_size
        with pdf.open("rb") as stream:
            head = stream.read(len(PDF_MAGIC))
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if size == 0:
        return "the file is empty; expected a PDF"
    if size > MAX_INVOICE_BYTES:
        return f"{size // 1024} KiB; an invoice is at most {MAX_INVOICE_BYTES // 2**20} MiB"
    if head != PDF_MAGIC:
        return "not a PDF (a PDF file starts with %PDF-); expected the invoice as a PDF"
    return None


def parse_serials(path: Path) -> tuple[list[SerialRow], list[Outcome]]:
    """Rows of a serials file (``order_id``, ``sku``, ``imei``, ``serial_number``), each
    checked on its own with the rules of the shipments file: an IMEI of 15 digits with a
    valid check digit, a serial number of at most 50 characters on one line."""
    rows, problems = read_table(path, ("order_id",), ("sku", "imei", "serial_number"))
    if rows and not ({"imei", "serial_number"} & set(rows[0][1])):
        raise ConfigError(f"{path}: the header has no column imei or serial_number; expected "
                          f"{', '.join(SERIAL_COLUMNS)} (';' or ',' separated)")
    found: list[SerialRow] = []
    first_row: dict[tuple[int, str], int] = {}
    for number, cells in rows:
        order_id = _order_id(cells.get("order_id", ""))
        sku = cells.get("sku", "")

        def bad(name: str, message: str, number: int = number,
                order_id: int | None = order_id, sku: str = sku) -> None:
            problems.append(Outcome("failed", order_id=order_id, sku=sku or None, row=number,
                                    field=name, message=message))

        if order_id is None:
            bad("order_id", _expected(cells.get("order_id"), "a Back Market order id (digits)"))
            continue
        raw_imei, serial = cells.get("imei", ""), cells.get("serial_number", "")
        if not raw_imei and not serial:
            bad("imei", "missing, and so is serial_number; give one of them or both")
            continue
        imei = None
        if raw_imei:
            try:
                imei = check_imei(raw_imei)
            except BadValue as exc:
                bad("imei", _expected(raw_imei, exc.expected))
                continue
        if serial and (len(serial) > MAX_SERIAL or not serial.isprintable()):
            bad("serial_number", _expected(serial, f"one line of at most {MAX_SERIAL} "
                                                   "printable characters"))
            continue
        key = (order_id, sku_key(sku))
        if key in first_row:
            bad("order_id", f"this line is also in row {first_row[key]} of this file: an "
                            "identifier is sent once, from the first valid row; this row is "
                            "not sent")
            continue
        first_row[key] = number
        found.append(SerialRow(number, order_id, sku, imei, serial or None))
    return found, problems


_Row = TypeVar("_Row", "Shipment", "InvoiceRow", "SerialRow")


def each_row(report: StepReport, items: Sequence[Outcome | _Row],
              send: Callable[[_Row], None], sku: Callable[[_Row], str | None] = lambda _: None
              ) -> StepReport:
    """A file's rows in their order: a bad row's outcome as parsed, a valid one sent by
    ``send``. Back Market refusing to show the order fails that row only; a fatal error (a
    rejected token, a WAF block) stops them all."""
    for item in sorted(items, key=lambda i: i.row or 0):
        if isinstance(item, Outcome):
            report.add(item)
            continue
        try:
            send(item)
        except FatalApiError:
            raise
        except OfferError as exc:  # reading the order failed: this row only
            report.add(Outcome("failed", None, item.order_id, sku(item), item.row, "order_id",
                               f"Back Market refused: {exc.message}", exc.request_id))
    return report
