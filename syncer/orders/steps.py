"""Orders, the seller's side: pull them, accept or cancel their paid lines, ship them.

    pull    GET /ws/orders modified since the store's last pull minus an overlap, page by
            page; new and changed orders are upserted into the state (orders, lines) and
            exported (CSV and JSON lines) for the seller's own systems.
    accept  paid lines (order state 1, line state 1) are accepted (new_state 2) by policy:
            "stock" when the catalog's stock of the SKU covers them, "all", or "manual" (only
            the lines of --accept FILE); lines of --cancel FILE are cancelled (new_state 4).
    ship    rows of a shipments file (order, carrier, tracking, IMEI or serial number) are
            checked row by row, then each order is shipped (new_state 3) once.
    invoice rows of an invoices file (order, PDF) are checked row by row, then each PDF is
            uploaded once as the order's invoice (POST /ws/orders/{id}/invoice).
    serials rows of a serials file (order, SKU, IMEI, serial number) are checked row by row
            with the shipments file's rules, then each identifier is registered once on its
            line (PATCH /ws/orderlines/{id}), typically after the shipment.

Every change is preceded by a fresh read of the order (so a line accepted elsewhere, or an
answer lost last time, is seen before anything is re-sent) and its outcome is recorded in the
state as it arrives. A confirmed acceptance, shipment, invoice or identifier is never sent
again (the state is looked at before anything is read or sent): rerunning a
command changes nothing. A bad row is reported with its row number and field and the other
rows go on.

Orders are keyed by account (platform and host) and order id; an order is handled through the
store that first pulled it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import structlog
from stdnum import imei as stdnum_imei

from syncer.backmarket import answers
from syncer.backmarket.client import BackMarketClient
from syncer.catalog.files import sniff_delimiter
from syncer.config.settings import Settings, StoreSettings
from syncer.core.offers import sku_key
from syncer.core.vocabulary import (
    IMEI_DIGITS,
    MAX_SERIAL,
    MAX_SHIPPER,
    MAX_TRACKING_NUMBER,
    MAX_TRACKING_URL,
)
from syncer.errors import ApiError, ConfigError, FatalApiError, OfferError, OutcomeUnknown
from syncer.pipeline.planner import catalog_source
from syncer.planning.mapping import Profile, compile_mapping, normalise
from syncer.planning.validation import BadValue, parse_count
from syncer.reports.tables import csv_cell
from syncer.state.store import StateStore

log = structlog.get_logger("syncer.orders.steps")

# Order states (OrderState) and orderline states (OrderLineState) of the spec.
ORDER_NEW: Final = 0
ORDER_PENDING_PAYMENT: Final = 10
ORDER_PAID: Final = 1
ORDER_TO_SHIP: Final = 3
ORDER_NOT_PAID: Final = 8
ORDER_DONE: Final = 9
LINE_PAID: Final = 1
LINE_ACCEPTED: Final = 2
LINE_SHIPPED: Final = 3
LINE_CANCELLED: Final = 4
# A line that reached one of these was accepted at some point.
ACCEPTED_OR_LATER: Final = frozenset({2, 3, 5, 6})
ORDER_STATE_NAMES: Final = {
    0: "new (payment check)", 10: "pending payment", 1: "paid", 3: "to ship",
    8: "not paid", 9: "processed",
}
LINE_STATE_NAMES: Final = {
    0: "new", 9: "on hold", 8: "pending payment", 1: "paid", 2: "accepted", 3: "shipped",
    4: "cancelled", 5: "refunded before shipping", 6: "refunded after shipping", 7: "not paid",
}

SHIPMENT_COLUMNS: Final = ("order_id", "carrier", "tracking_number", "tracking_url", "imei",
                           "serial_number", "shipper")
LINE_LIST_COLUMNS: Final = ("order_id", "sku")
INVOICE_COLUMNS: Final = ("order_id", "path")
SERIAL_COLUMNS: Final = ("order_id", "sku", "imei", "serial_number")
PDF_MAGIC: Final = b"%PDF-"
# Our own bound on an invoice upload (Back Market documents none): a PDF invoice is a few
# hundred KiB; a file this big is a mistake (a scan of a whole folder).
MAX_INVOICE_BYTES: Final = 10 * 1024 * 1024
UNPAID_ORDER_STATES: Final = frozenset({ORDER_NEW, ORDER_PENDING_PAYMENT, ORDER_NOT_PAID})
# A line gets its identifiers once accepted (at the latest, after it shipped).
IDENTIFIABLE_LINE_STATES: Final = frozenset({LINE_ACCEPTED, LINE_SHIPPED})
EXPORT_COLUMNS: Final = (
    "store", "change", "order_id", "order_state", "country_code", "date_creation",
    "date_modification", "date_payment", "currency", "order_price", "order_shipping_price",
    "orderline_id", "sku", "product", "quantity", "unit_price", "unit_shipping_price",
    "line_state", "first_name", "last_name", "company", "street", "street2", "postal_code",
    "city", "country", "phone", "email", "tracking_number", "shipper", "date_shipping",
)
# Cells a spreadsheet would read as a formula (CSV injection): prefixed with a quote.

ClientFor = Callable[[StoreSettings], BackMarketClient]


# --- values ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one order, line or input row. ``status`` is one of "accepted",
    "cancelled", "held" (left for the seller), "shipped", "skipped" (already done),
    "failed", or "would-..." in a dry run."""

    status: str
    store: str | None = None
    order_id: int | None = None
    sku: str | None = None
    row: int | None = None
    field: str | None = None
    message: str = ""
    request_id: str | None = None

    def describe(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.order_id is not None:
            where.append(f"order {self.order_id}")
        if self.sku:
            where.append(f"SKU {self.sku}")
        text = ", ".join(where) or "-"
        detail = f"{self.field}: {self.message}" if self.field else self.message
        rid = f" [request {self.request_id}]" if self.request_id else ""
        return f"{self.status.upper():<9} {text}" + (f": {detail}" if detail else "") + rid

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "store": self.store, "order_id": self.order_id,
                "sku": self.sku, "row": self.row, "field": self.field,
                "message": self.message, "request_id": self.request_id}


@dataclass
class StepReport:
    """The outcomes of one ``accept`` or ``ship`` run, over every selected store."""

    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        level = "warning" if outcome.status == "failed" else "info"
        getattr(log, level)("order step", **{k: v for k, v in outcome.to_dict().items()
                                             if v is not None})

    def counts(self, store: str | None = None) -> dict[str, int]:
        found: dict[str, int] = {}
        for outcome in self.outcomes:
            if store is None or outcome.store == store:
                found[outcome.status] = found.get(outcome.status, 0) + 1
        return found

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "failed")


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
class CatalogStock:
    sku: str
    row: int
    stock: int | None
    problem: str | None = None


@dataclass
class PullResult:
    store: str
    scope: str
    since: datetime
    fetched: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    lines: int = 0
    other_countries: int = 0  # answered despite the country_code filter: left out
    previous: datetime | None = None  # the watermark before this pull
    watermark: datetime | None = None
    exported: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (change, order)
    rows: list[dict[str, Any]] = field(default_factory=list)  # state rows of new and changed
    line_rows: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = {"fetched": self.fetched, "new": self.new, "changed": self.changed,
                  "unchanged": self.unchanged, "lines": self.lines}
        if self.other_countries:
            counts["other_countries"] = self.other_countries
        return counts


# --- pure helpers ---------------------------------------------------------------------------

def check_imei(text: str) -> str:
    """A 15-digit IMEI with a valid Luhn check digit (spaces and dashes allowed), compact."""
    compact = str(stdnum_imei.compact(text.strip()))
    if not compact.isdigit() or len(compact) != IMEI_DIGITS:
        raise BadValue("an IMEI of 15 digits")
    if not stdnum_imei.is_valid(compact):
        raise BadValue("an IMEI with a valid check digit (15th digit, Luhn)")
    return compact


def order_hash(order: Mapping[str, Any]) -> str:
    """Change detection: a hash of the order's canonical JSON."""
    canonical = json.dumps(order, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=8).hexdigest()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_date(value: object) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


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


def line_state(order: Mapping[str, Any], sku: str) -> int | None:
    """The state of the order's line with this SKU (matched ignoring case), or None."""
    for line in order.get("orderlines") or []:
        if sku_key(str(line.get("listing", ""))) == sku_key(sku):
            state = line.get("state")
            return state if isinstance(state, int) else None
    return None


def order_rows(account: str, store: str, order: Mapping[str, Any]
               ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The state rows of an order as Back Market sent it: the order and its lines."""
    order_id = int(order["order_id"])
    row = {
        "account": account, "order_id": order_id, "store": store,
        "country_code": str(order.get("country_code") or ""),
        "state": _state(order.get("state")),
        "currency": _text(order.get("currency"), 3),
        "price": _text(order.get("price"), 24),
        "shipping_price": _text(order.get("shipping_price"), 24),
        "date_creation": parse_date(order.get("date_creation")),
        "date_modification": parse_date(order.get("date_modification")),
        "date_payment": parse_date(order.get("date_payment")),
        "date_shipping": parse_date(order.get("date_shipping")),
        # Back Market writes "" until the order ships: kept as "not set".
        "tracking_number": _text(order.get("tracking_number"), 200) or None,
        "tracking_url": _text(order.get("tracking_url"), 2000) or None,
        "shipper": _text(order.get("shipper_display") or order.get("shipper"), 200) or None,
        "content_hash": order_hash(order),
        "data": json.dumps(order, sort_keys=True, default=str),
        "pulled_at": datetime.now(UTC),
    }
    lines = [
        {
            "account": account, "orderline_id": int(line["id"]), "order_id": order_id,
            "sku": str(line.get("listing") or "")[:128],
            "quantity": int(line.get("quantity") or 0),
            "price": _text(line.get("price"), 24),
            "shipping_price": _text(line.get("shipping_price"), 24),
            "currency": _text(line.get("currency"), 3),
            "state": _state(line.get("state")),
            "product": _text(line.get("product"), 10_000),
            "imei": _text(line.get("imei"), 15) or None,
            "serial_number": _text(line.get("serial_number"), 50) or None,
        }
        for line in order.get("orderlines") or []
        if isinstance(line, Mapping) and line.get("id") is not None
    ]
    return row, lines


def _text(value: object, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


def _state(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


# --- input files ----------------------------------------------------------------------------

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


def _expected(value: str | None, expected: str) -> str:
    shown = "empty" if not value else repr(value[:80])
    return f"{shown}; expected {expected}"


def catalog_stock(settings: Settings, catalog: Path | None = None) -> dict[str, CatalogStock]:
    """The stock column of every catalog row, by SKU key, read through the mapping profile
    (before safety stock and max quantity: what is physically there to ship)."""
    from syncer.planning.mapping import load_profile

    profile = load_profile(settings.mapping_path())
    found: dict[str, CatalogStock] = {}
    with catalog_source(settings, catalog).open() as stream:
        mapping = compile_mapping(profile, stream.header, settings.stores)
        sku_of, stock_of = mapping.offer["sku"], mapping.offer["stock"]
        for row, values in stream.rows:
            if len(values) != len(stream.header):
                continue
            sku = sku_of(values)
            if sku is None:
                continue
            key = sku_key(sku)
            if key in found:
                first = found[key]
                found[key] = CatalogStock(sku, first.row, None, (
                    f"the catalog has SKU {sku} on rows {first.row} and {row}"))
                continue
            raw = stock_of(values)
            try:
                stock = parse_count(raw or "")
            except BadValue as exc:
                found[key] = CatalogStock(sku, row, None, (
                    f"catalog row {row}: stock {raw!r} is not {exc.expected}"))
            else:
                found[key] = CatalogStock(sku, row, stock)
    return found


# --- pull -----------------------------------------------------------------------------------

def pull_scope(settings: Settings, store: StoreSettings, all_countries: bool) -> str:
    if all_countries:
        return "all"
    return store.order_pull_scope or settings.orders.pull_scope


def pull(settings: Settings, store: StoreSettings, client: BackMarketClient,
         state: StateStore, *, scope: str, now: datetime | None = None) -> PullResult:
    """Fetch the orders modified since the last pull minus the overlap (the first pull goes
    back ``first_pull_days``) and sort them into new, changed and unchanged. Writes nothing:
    ``save_pull`` stores them once they are exported."""
    now = now or datetime.now(UTC)
    config = settings.orders
    watermark = state.orders.order_watermark(store.name, scope)
    since = (watermark - timedelta(minutes=config.overlap_minutes) if watermark is not None
             else now - timedelta(days=config.first_pull_days))
    filters: dict[str, str | int] = {"date_modification": rfc3339(since)}
    if scope == "store":
        filters["country_code"] = store.locale
    fetched: dict[int, dict[str, Any]] = {}
    foreign = 0
    for order in client.iter_orders(**filters):
        if not isinstance(order, dict) or not isinstance(order.get("order_id"), int):
            continue
        # Back Market does not filter orders by Accept-Language (one real call returned
        # several countries): a store pulling its own country keeps only that country's,
        # even if the country_code filter were ignored, so no store takes another's order.
        if scope == "store" and order.get("country_code") != store.locale:
            foreign += 1
            continue
        fetched[order["order_id"]] = order  # a page shift may show an order twice
    result = PullResult(store.name, scope, since, fetched=len(fetched), previous=watermark,
                        watermark=watermark, other_countries=foreign)
    if foreign:
        log.warning("orders of other countries left out", store=store.name, count=foreign,
                    country_code=store.locale)
    known = state.orders.order_hashes(store.account, sorted(fetched))
    for order_id, order in sorted(fetched.items()):
        previous = known.get(order_id)
        modified = parse_date(order.get("date_modification"))
        if modified is not None and (result.watermark is None or modified > result.watermark):
            result.watermark = modified
        if previous == order_hash(order):
            result.unchanged += 1
            continue
        change = "new" if previous is None else "changed"
        setattr(result, change, getattr(result, change) + 1)
        row, order_lines = order_rows(store.account, store.name, order)
        result.rows.append(row)
        result.line_rows.extend(order_lines)
        result.exported.append((change, order))
    result.lines = len(result.line_rows)
    return result


def save_pull(state: StateStore, result: PullResult) -> None:
    """Store a pull's new and changed orders, then move the store's watermark to the latest
    modification seen (never back): the next pull starts there, minus the overlap."""
    state.orders.save_orders(result.rows, result.line_rows)
    if result.watermark != result.previous:
        state.orders.set_order_watermark(result.store, result.scope, result.watermark)


def export(results: Sequence[PullResult], folder: Path, run_id: str,
           now: datetime | None = None) -> list[Path]:
    """One CSV (a row per orderline, ';' separated) and one JSON lines file (an order per
    line, as Back Market sent it) for the new and changed orders of a pull run."""
    entries = [(r.store, change, order) for r in results for change, order in r.exported]
    if not entries:
        return []
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = folder / f"orders-{stamp}-{run_id}"
    csv_path, jsonl_path = base.with_suffix(".csv"), base.with_suffix(".jsonl")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with csv_path.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, delimiter=";", quoting=csv.QUOTE_MINIMAL,
                                lineterminator="\n")
            writer.writerow(EXPORT_COLUMNS)
            for store, change, order in entries:
                for cells in _export_rows(store, change, order):
                    writer.writerow([csv_cell(cells.get(name)) for name in EXPORT_COLUMNS])
        with jsonl_path.open("w", encoding="utf-8", newline="\n") as out:
            for store, change, order in entries:
                out.write(json.dumps({"store": store, "change": change, "order": order},
                                     sort_keys=True, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write the orders export in {folder}: {exc.strerror}") \
            from None
    return [csv_path, jsonl_path]


def _export_rows(store: str, change: str, order: Mapping[str, Any]
                 ) -> Iterable[dict[str, Any]]:
    address = answers.address(order.get("shipping_address"))
    base = {
        "store": store, "change": change, "order_id": order.get("order_id"),
        "order_state": order.get("state"), "country_code": order.get("country_code"),
        "date_creation": order.get("date_creation"),
        "date_modification": order.get("date_modification"),
        "date_payment": order.get("date_payment"), "currency": order.get("currency"),
        "order_price": order.get("price"), "order_shipping_price": order.get("shipping_price"),
        **{name: address[name] for name in ("first_name", "last_name", "company", "street",
                                            "street2", "postal_code", "city", "country",
                                            "phone", "email")},
        "tracking_number": order.get("tracking_number"),
        "shipper": order.get("shipper_display") or order.get("shipper"),
        "date_shipping": order.get("date_shipping"),
    }
    for line in order.get("orderlines") or [{}]:
        yield {**base, "orderline_id": line.get("id"), "sku": line.get("listing"),
               "product": line.get("product"), "quantity": line.get("quantity"),
               "unit_price": line.get("price"), "unit_shipping_price": line.get("shipping_price"),
               "line_state": line.get("state")}


# --- accept ---------------------------------------------------------------------------------

@dataclass
class _LineTask:
    action: str  # "accept" or "cancel"
    sku: str
    orderline_id: int
    row: int | None = None  # the row of the --accept/--cancel file that asked for it


def accept(settings: Settings, stores: Sequence[StoreSettings], state: StateStore,
           client_for: ClientFor, *, accept_file: Path | None = None,
           cancel_file: Path | None = None, catalog: Path | None = None,
           dry_run: bool = False) -> StepReport:
    """Cancel the lines of ``cancel_file``, accept those of ``accept_file``, and decide the
    other paid lines by the policy (``orders.accept_policy``). Lines are taken oldest
    payment first, so that scarce stock goes to the earliest orders."""
    report = StepReport()
    policy = settings.orders.accept_policy
    chosen: dict[tuple[str, int], dict[int, _LineTask]] = {}  # (store, order) -> line tasks
    excluded: set[tuple[tuple[str, int], int]] = set()  # lines listed twice: left alone
    orders: dict[tuple[str, int], dict[str, Any]] = {}
    for action, path in (("cancel", cancel_file), ("accept", accept_file)):
        if path is None:
            continue
        choices, problems = parse_line_choices(path)
        for problem in problems:
            report.add(problem)
        for choice in choices:
            _choose(choice, action, stores, state, chosen, excluded, orders, report)

    stock = None
    for store in stores:
        paid = state.orders.orders_in_state([store.name], ORDER_PAID)
        for order in paid:
            orders.setdefault((store.name, order["order_id"]), order)
        pending = [(order, line) for order in paid for line in order["lines"].values()
                   if line["state"] == LINE_PAID
                   and line["orderline_id"] not in chosen.get((store.name, order["order_id"]),
                                                              {})
                   and ((store.name, order["order_id"]), line["orderline_id"]) not in excluded]
        if policy == "stock" and pending and stock is None:
            stock = catalog_stock(settings, catalog)
        taken = _accepted_not_shipped(settings, store, state) if policy == "stock" else {}
        for order, line in pending:
            reason = _hold_reason(policy, line, stock or {}, taken)
            key = (store.name, order["order_id"])
            if reason is None:
                chosen.setdefault(key, {})[line["orderline_id"]] = _LineTask(
                    "accept", line["sku"], line["orderline_id"])
                continue
            report.add(Outcome("would-hold" if dry_run else "held", store.name,
                               order["order_id"], line["sku"], message=reason))
            if not dry_run:
                before = state.orders.line_actions(store.account, order["order_id"]).get(
                    line["orderline_id"])
                if before is None or (before["action"], before["reason"]) != ("hold", reason):
                    state.orders.record_line_action(store.account, line["orderline_id"],
                                                    order["order_id"], line["sku"], "hold", "held",
                                                    reason)

    by_name = {store.name: store for store in stores}
    for (name, order_id), tasks in sorted(chosen.items(), key=lambda item: _payment_order(
            orders.get(item[0]))):
        store = by_name[name]
        ordered = sorted(tasks.values(), key=lambda t: (t.action != "cancel", t.orderline_id))
        if dry_run:
            for task in ordered:
                report.add(Outcome(f"would-{task.action}", name, order_id, task.sku,
                                   row=task.row))
            continue
        _apply_line_tasks(store, client_for(store), state, order_id, ordered, report)
    return report


def _choose(choice: LineChoice, action: str, stores: Sequence[StoreSettings],
            state: StateStore, chosen: dict[tuple[str, int], dict[int, _LineTask]],
            excluded: set[tuple[tuple[str, int], int]],
            orders: dict[tuple[str, int], dict[str, Any]], report: StepReport) -> None:
    """Check one row of an --accept/--cancel file against the state and queue its task."""
    found = _find_order(stores, state, choice.order_id)
    if found is None:
        report.add(Outcome("failed", None, choice.order_id, choice.sku, choice.row, "order_id",
                           f"order {choice.order_id} is not in the state of these stores; run "
                           "`syncer orders pull` first"))
        return
    store, order = found
    key = (store.name, choice.order_id)
    orders.setdefault(key, order)
    line = next((line for line in order["lines"].values()
                 if sku_key(line["sku"]) == sku_key(choice.sku)), None)
    if line is None:
        skus = ", ".join(line["sku"] for line in order["lines"].values())
        report.add(Outcome("failed", store.name, choice.order_id, choice.sku, choice.row, "sku",
                           f"order {choice.order_id} has no line with this SKU (it has {skus})"))
        return
    earlier = chosen.get(key, {}).get(line["orderline_id"])
    if earlier is not None or (key, line["orderline_id"]) in excluded:
        where = f" (row {earlier.row})" if earlier is not None else ""
        report.add(Outcome("failed", store.name, choice.order_id, line["sku"], choice.row,
                           "sku", f"this line is listed more than once{where}; nothing is "
                                  "sent for it"))
        chosen.get(key, {}).pop(line["orderline_id"], None)
        excluded.add((key, line["orderline_id"]))
        return
    done = LINE_CANCELLED if action == "cancel" else LINE_ACCEPTED
    if line["state"] == done or (action == "accept" and line["state"] in ACCEPTED_OR_LATER):
        report.add(Outcome("skipped", store.name, choice.order_id, line["sku"], choice.row,
                           message=f"already {LINE_STATE_NAMES[line['state']]}"))
        return
    if line["state"] != LINE_PAID:
        done_name = "cancelled" if action == "cancel" else "accepted"
        report.add(Outcome("failed", store.name, choice.order_id, line["sku"], choice.row,
                           "sku", f"the line is {_line_state_name(line['state'])}; only a paid "
                                  f"line can be {done_name}"))
        return
    chosen.setdefault(key, {})[line["orderline_id"]] = _LineTask(
        action, line["sku"], line["orderline_id"], choice.row)


def _accepted_not_shipped(settings: Settings, store: StoreSettings, state: StateStore
                          ) -> dict[str, int]:
    """Units of each SKU in lines accepted and not shipped yet, over every store of the
    account (stock is global): still on the shelf, so still counted in the catalog's stock,
    but promised to a buyer."""
    names = [s.name for s in settings.stores if s.account == store.account]
    taken: dict[str, int] = {}
    for order_state in (ORDER_PAID, ORDER_TO_SHIP):
        for order in state.orders.orders_in_state(names, order_state):
            for line in order["lines"].values():
                if line["state"] == LINE_ACCEPTED:
                    key = sku_key(line["sku"])
                    taken[key] = taken.get(key, 0) + int(line["quantity"])
    return taken


def _hold_reason(policy: str, line: Mapping[str, Any], stock: Mapping[str, CatalogStock],
                 taken: dict[str, int]) -> str | None:
    """Why the policy leaves a paid line for the seller, or None to accept it."""
    if policy == "all":
        return None
    if policy == "manual":
        return "accept policy is manual: list the line in --accept FILE to accept it"
    key = sku_key(line["sku"])
    entry = stock.get(key)
    if entry is None:
        return "the SKU is not in the catalog"
    if entry.stock is None:
        return entry.problem or "the catalog gives no stock for the SKU"
    used = taken.get(key, 0)
    if entry.stock - used < line["quantity"]:
        earlier = f" ({used} already promised to accepted, unshipped lines)" if used else ""
        return (f"catalog stock is {entry.stock}{earlier}, the line needs {line['quantity']}; "
                "accept it with --accept FILE or cancel it with --cancel FILE")
    taken[key] = used + line["quantity"]
    return None


def _apply_line_tasks(store: StoreSettings, client: BackMarketClient, state: StateStore,
                      order_id: int, tasks: Sequence[_LineTask], report: StepReport) -> None:
    """Read the order afresh, then send each line's change that has not landed yet."""
    try:
        order = client.get_order(order_id)
    except OfferError as exc:
        for task in tasks:
            _line_failed(store, state, order_id, task, report, exc, "order_id")
        return
    _save(state, store, order)
    for task in tasks:
        target = LINE_CANCELLED if task.action == "cancel" else LINE_ACCEPTED
        landed = {LINE_CANCELLED} if task.action == "cancel" else ACCEPTED_OR_LATER
        current = line_state(order, task.sku)
        status = "cancelled" if task.action == "cancel" else "accepted"
        if current in landed:
            state.orders.record_line_action(store.account, task.orderline_id, order_id, task.sku,
                                            task.action, "confirmed", "already done on Back Market")
            report.add(Outcome("skipped", store.name, order_id, task.sku, task.row,
                               message=f"already {LINE_STATE_NAMES.get(current or 0, '')}"))
            continue
        if current != LINE_PAID:
            message = (f"the line is now {_line_state_name(current)} on Back Market; it can no "
                       f"longer be {status}")
            state.orders.record_line_action(store.account, task.orderline_id, order_id, task.sku,
                                            task.action, "failed", message)
            report.add(Outcome("failed", store.name, order_id, task.sku, task.row, "state",
                               message))
            continue
        try:
            order = client.update_order(order_id, {"new_state": target, "sku": task.sku},
                                        applied=_landed(task.sku, landed))
        except OfferError as exc:
            _line_failed(store, state, order_id, task, report, exc, "sku")
            continue
        _save(state, store, order)
        state.orders.record_line_action(store.account, task.orderline_id, order_id, task.sku,
                                        task.action, "confirmed")
        report.add(Outcome(status, store.name, order_id, task.sku, task.row))


def _landed(sku: str, states: frozenset[int] | set[int]) -> Callable[[dict[str, Any]], bool]:
    """Whether an order read back shows the line's change applied."""
    return lambda order: line_state(order, sku) in states


def _line_failed(store: StoreSettings, state: StateStore, order_id: int, task: _LineTask,
                 report: StepReport, exc: ApiError, field_name: str) -> None:
    message = f"Back Market refused: {exc.message}"
    if exc.status == 404 and field_name == "order_id":
        message = f"order {order_id} is unknown to Back Market ({exc.message})"
    state.orders.record_line_action(store.account, task.orderline_id, order_id, task.sku,
                                    task.action, "failed", message, exc.request_id)
    report.add(Outcome("failed", store.name, order_id, task.sku, task.row, field_name, message,
                       exc.request_id))


# --- ship -----------------------------------------------------------------------------------

def ship(settings: Settings, stores: Sequence[StoreSettings], state: StateStore,
         client_for: ClientFor, profile: Profile, path: Path, *,
         dry_run: bool = False) -> StepReport:
    """Ship each valid row of a shipments file; every bad row is reported and skipped."""
    report = StepReport()
    shipments, problems = parse_shipments(path, profile, settings.orders.carrier_fallback)
    rows: list[Outcome | Shipment] = [*problems, *shipments]

    def send(item: Shipment) -> None:
        _ship_one(stores, state, client_for, item, report, dry_run)

    return _each_row(report, rows, send)


_Row = TypeVar("_Row", "Shipment", "InvoiceRow", "SerialRow")


def _each_row(report: StepReport, items: Sequence[Outcome | _Row],
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


def _not_pulled(order_id: int) -> str:
    return (f"order {order_id} is not in the state of these stores; run `syncer orders pull` "
            "first (or check the order id)")


def _ship_one(stores: Sequence[StoreSettings], state: StateStore, client_for: ClientFor,
              shipment: Shipment, report: StepReport, dry_run: bool) -> None:
    row, order_id = shipment.row, shipment.order_id

    def fail(field_name: str, message: str, store: str | None = None,
             request_id: str | None = None) -> None:
        report.add(Outcome("failed", store, order_id, row=row, field=field_name,
                           message=message, request_id=request_id))

    found = _find_order(stores, state, order_id)
    if found is None:
        fail("order_id", _not_pulled(order_id))
        return
    store, order = found
    done = state.orders.shipment(store.account, order_id)
    if done is not None and done["status"] == "confirmed":
        note = "already shipped"
        if done["tracking_number"] != shipment.tracking_number:
            note += (f" with tracking {done['tracking_number']} (this row says "
                     f"{shipment.tracking_number}; Back Market cannot correct a shipment)")
        report.add(Outcome("skipped", store.name, order_id, row=row, message=note))
        return
    lines = list(order["lines"].values())
    for name, value in (("imei", shipment.imei), ("serial_number", shipment.serial_number)):
        if value and (len(lines) != 1 or lines[0]["quantity"] != 1):
            shape = (f"{len(lines)} lines" if len(lines) != 1
                     else f"one line of quantity {lines[0]['quantity']}")
            article = "an" if name == "imei" else "a"
            fail(name, f"{article} {name} is only sent for an order of one line of quantity 1 "
                       f"(Back Market cannot correct it afterwards); order {order_id} has {shape}. "
                       "Nothing was sent: leave it empty to ship without it", store.name)
            return
    problem = _not_shippable(order["state"], lines)
    # A processed order that shipped something is looked at on Back Market (this very
    # tracking: already done); one whose lines are all cancelled has nothing to ship.
    if problem is not None and (order["state"] != ORDER_DONE or not _shipped_any(lines)):
        fail("order_id", problem, store.name)
        return
    what = (f"{shipment.shipper}" + (f" (carrier {shipment.carrier!r}, fallback)"
                                     if shipment.fallback else "")
            + f", tracking {shipment.tracking_number}"
            + (f", IMEI {shipment.imei}" if shipment.imei else "")
            + (f", serial {shipment.serial_number}" if shipment.serial_number else ""))
    if dry_run:
        report.add(Outcome("would-ship", store.name, order_id, row=row, message=what))
        return
    client = client_for(store)
    try:
        fresh = client.get_order(order_id)
    except OfferError as exc:
        if exc.status == 404:
            fail("order_id", f"order {order_id} is unknown to Back Market ({exc.message})",
                 store.name, exc.request_id)
            return
        raise
    _save(state, store, fresh)
    fresh_lines = [line for line in fresh.get("orderlines") or [] if isinstance(line, dict)]
    if fresh.get("state") == ORDER_DONE and not _shipped_any(fresh_lines):
        fail("order_id", str(_not_shippable(ORDER_DONE, fresh_lines)), store.name)
        return
    if fresh.get("state") == ORDER_DONE:
        if fresh.get("tracking_number") == shipment.tracking_number:
            _record_shipment(state, store, shipment, "confirmed")
            report.add(Outcome("skipped", store.name, order_id, row=row,
                               message="already shipped on Back Market with this tracking"))
        else:
            fail("order_id", f"order {order_id} is already processed on Back Market"
                             + (f" (tracking {fresh['tracking_number']})"
                                if fresh.get("tracking_number") else "")
                             + "; a shipment cannot be sent twice or corrected", store.name)
        return
    problem = _not_shippable(int(fresh.get("state", -1)),
                             [{"state": line.get("state")} for line in fresh_lines])
    if problem is not None:
        fail("order_id", problem, store.name)
        return
    body: dict[str, Any] = {"new_state": LINE_SHIPPED, "tracking_number": shipment.tracking_number,
                            "shipper": shipment.shipper}
    if shipment.tracking_url:
        body["tracking_url"] = shipment.tracking_url
    if shipment.imei:
        body["imei"] = shipment.imei
    if shipment.serial_number:
        body["serial_number"] = shipment.serial_number
    try:
        answer = client.update_order(order_id, body, applied=lambda o: (
            o.get("state") == ORDER_DONE and o.get("tracking_number") == shipment.tracking_number))
    except OfferError as exc:
        message = f"Back Market refused the shipment: {exc.message}"
        _record_shipment(state, store, shipment, "failed", message, exc.request_id)
        fail("order_id", message, store.name, exc.request_id)
        return
    _save(state, store, answer)
    _record_shipment(state, store, shipment, "confirmed")
    report.add(Outcome("shipped", store.name, order_id, row=row, message=what))


def _shipped_any(lines: Sequence[Mapping[str, Any]]) -> bool:
    return any(line.get("state") in (LINE_SHIPPED, 6) for line in lines)


def _not_shippable(order_state: int, lines: Sequence[Mapping[str, Any]]) -> str | None:
    """Why an order in this state cannot be shipped, or None."""
    if order_state == ORDER_TO_SHIP:
        return None
    if order_state == ORDER_PAID:
        waiting = sum(1 for line in lines if line.get("state") == LINE_PAID)
        return (f"the order still has {waiting} paid line(s) to accept or cancel; run "
                "`syncer orders accept` first")
    if order_state in (ORDER_NEW, ORDER_PENDING_PAYMENT):
        return "the order's payment is not validated yet: it must not be shipped"
    if order_state == ORDER_NOT_PAID:
        return "the order was not paid: ignore it"
    if order_state == ORDER_DONE:
        if not _shipped_any(lines):
            return "the order is processed without anything to ship (its lines are cancelled)"
        return "the order is already shipped"
    return f"the order is in state {order_state}, not to ship"


def _record_shipment(state: StateStore, store: StoreSettings, shipment: Shipment, status: str,
                     error: str | None = None, request_id: str | None = None) -> None:
    state.orders.record_shipment({
        "account": store.account, "order_id": shipment.order_id, "store": store.name,
        "carrier": shipment.carrier[:200], "shipper": shipment.shipper,
        "tracking_number": shipment.tracking_number, "tracking_url": shipment.tracking_url,
        "imei": shipment.imei, "serial_number": shipment.serial_number, "status": status,
        "error": error, "request_id": request_id,
    })


# --- shared ---------------------------------------------------------------------------------

def _find_order(stores: Sequence[StoreSettings], state: StateStore, order_id: int
                ) -> tuple[StoreSettings, dict[str, Any]] | None:
    """The order in the state, with the selected store that handles it (the one that pulled
    it, else another selected store of the same account)."""
    for account in dict.fromkeys(store.account for store in stores):
        order = state.orders.find_order(account, order_id)
        if order is None:
            continue
        same = [s for s in stores if s.account == account]
        store = next((s for s in same if s.name == order["store"]), same[0])
        return store, order
    return None


def _save(state: StateStore, store: StoreSettings, order: Mapping[str, Any]) -> None:
    if isinstance(order.get("order_id"), int):
        row, lines = order_rows(store.account, store.name, order)
        state.orders.save_orders([row], lines)


def _payment_order(order: Mapping[str, Any] | None) -> tuple[datetime, int]:
    if order is None:
        return datetime.max.replace(tzinfo=UTC), 0
    paid = order.get("date_payment") or datetime.max.replace(tzinfo=UTC)
    return paid, int(order["order_id"])


def _line_state_name(state: int | None) -> str:
    if state is None:
        return "missing"
    return f"{LINE_STATE_NAMES.get(state, 'unknown')} (state {state})"


# --- invoice --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class InvoiceRow:
    """One valid row of an invoices file: the order and its PDF (the order not checked yet)."""

    row: int
    order_id: int
    path: Path  # resolved against the invoices file's folder
    named: str  # as the file names it
    size: int


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


def invoice(stores: Sequence[StoreSettings], state: StateStore, client_for: ClientFor,
            path: Path, *, dry_run: bool = False) -> StepReport:
    """Send each valid row's PDF as the order's invoice, once; bad rows are reported."""
    report = StepReport()
    valid, problems = parse_invoices(path)
    rows: list[Outcome | InvoiceRow] = [*problems, *valid]

    def send(item: InvoiceRow) -> None:
        _invoice_one(stores, state, client_for, item, report, dry_run)

    return _each_row(report, rows, send)


def _invoice_one(stores: Sequence[StoreSettings], state: StateStore, client_for: ClientFor,
                 item: InvoiceRow, report: StepReport, dry_run: bool) -> None:
    row, order_id = item.row, item.order_id

    def fail(field_name: str, message: str, store: str | None = None,
             request_id: str | None = None) -> None:
        report.add(Outcome("failed", store, order_id, row=row, field=field_name,
                           message=message, request_id=request_id))

    found = _find_order(stores, state, order_id)
    if found is None:
        fail("order_id", _not_pulled(order_id))
        return
    store, order = found
    done = state.orders.invoice(store.account, order_id)
    if done is not None and done["status"] == "confirmed":
        note = f"invoice already sent ({done['path']})"
        if done["sha256"] is not None and done["sha256"] != _sha256(item.path):
            note += f"; this row's file {item.named} differs: an invoice is sent once"
        report.add(Outcome("skipped", store.name, order_id, row=row, message=note))
        return
    if order["state"] in UNPAID_ORDER_STATES:
        fail("order_id", f"the order is {ORDER_STATE_NAMES.get(order['state'], 'unpaid')}: "
                         "an invoice is given for a paid order", store.name)
        return
    what = f"invoice {item.named} ({max(1, item.size // 1024)} KiB)"
    if dry_run:
        report.add(Outcome("would-send", store.name, order_id, row=row, message=what))
        return
    client = client_for(store)
    try:
        fresh = client.get_order(order_id)
    except OfferError as exc:
        if exc.status == 404:
            fail("order_id", f"order {order_id} is unknown to Back Market ({exc.message})",
                 store.name, exc.request_id)
            return
        raise
    _save(state, store, fresh)
    record = {"account": store.account, "order_id": order_id, "store": store.name,
              "path": item.named, "sha256": None, "size": item.size}
    if fresh.get("date_bill_provided"):
        # Given in the back office, or sent by a run whose answer was lost: not sent twice.
        state.orders.record_invoice({**record, "status": "confirmed", "error": (
            f"Back Market already had an invoice (date_bill_provided "
            f"{fresh['date_bill_provided']})")})
        report.add(Outcome("skipped", store.name, order_id, row=row, message=(
            f"Back Market already has an invoice for this order (given "
            f"{fresh['date_bill_provided']}); not sent again")))
        return
    try:
        pdf = item.path.read_bytes()
    except OSError as exc:
        fail("path", f"{item.named}: cannot be read ({exc.strerror})", store.name)
        return
    record["sha256"], record["size"] = hashlib.sha256(pdf).hexdigest(), len(pdf)
    try:
        client.upload_invoice(order_id, pdf, item.path.name)
    except OfferError as exc:
        message = f"Back Market refused the invoice: {exc.message}"
        state.orders.record_invoice({**record, "status": "failed", "error": message,
                                     "request_id": exc.request_id})
        fail("path", message, store.name, exc.request_id)
        return
    state.orders.record_invoice({**record, "status": "confirmed"})
    report.add(Outcome("sent", store.name, order_id, row=row, message=what))


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


# --- serials --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SerialRow:
    """One valid row of a serials file: identifiers for a line named by order and SKU."""

    row: int
    order_id: int
    sku: str  # "" when the order has one line
    imei: str | None
    serial_number: str | None


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


def serials(stores: Sequence[StoreSettings], state: StateStore, client_for: ClientFor,
            path: Path, *, dry_run: bool = False) -> StepReport:
    """Register each valid row's IMEI and serial number on its order line, once."""
    report = StepReport()
    valid, problems = parse_serials(path)
    rows: list[Outcome | SerialRow] = [*problems, *valid]

    def send(item: SerialRow) -> None:
        _serials_one(stores, state, client_for, item, report, dry_run)

    def sku(item: SerialRow) -> str | None:
        return item.sku or None

    return _each_row(report, rows, send, sku)


def _serials_one(stores: Sequence[StoreSettings], state: StateStore, client_for: ClientFor,
                 item: SerialRow, report: StepReport, dry_run: bool) -> None:
    row, order_id = item.row, item.order_id
    sku: str | None = item.sku or None

    def fail(field_name: str, message: str, store: str | None = None,
             request_id: str | None = None) -> None:
        report.add(Outcome("failed", store, order_id, sku, row, field_name, message,
                           request_id))

    found = _find_order(stores, state, order_id)
    if found is None:
        fail("order_id", _not_pulled(order_id))
        return
    store, order = found
    lines = list(order["lines"].values())
    if item.sku:
        line = next((x for x in lines if sku_key(x["sku"]) == sku_key(item.sku)), None)
        if line is None:
            fail("sku", f"order {order_id} has no line with this SKU (it has "
                        f"{', '.join(x['sku'] for x in lines)})", store.name)
            return
    elif len(lines) != 1:
        fail("sku", f"missing; order {order_id} has {len(lines)} lines "
                    f"({', '.join(x['sku'] for x in lines)}): name the line by its SKU",
             store.name)
        return
    else:
        line = lines[0]
    sku = line["sku"]
    if line["quantity"] != 1:
        fail("imei" if item.imei else "serial_number",
             f"an identifier names one device; this line has quantity {line['quantity']} "
             "(Back Market cannot correct it afterwards). Nothing was sent", store.name)
        return
    if line["state"] not in IDENTIFIABLE_LINE_STATES:
        fail("sku", f"the line is {_line_state_name(line['state'])}; identifiers are added "
                    "to an accepted or shipped line", store.name)
        return
    record = state.orders.line_identifier(store.account, line["orderline_id"])
    known = {"imei": line.get("imei"), "serial_number": line.get("serial_number")}
    if record is not None:
        known = {name: record[name] or known[name] for name in known}
    wanted = {"imei": item.imei, "serial_number": item.serial_number}
    to_send = _identifiers_to_send(wanted, known)
    if isinstance(to_send, str):
        fail(to_send, _conflict(to_send, known, wanted), store.name)
        return
    if not to_send:
        report.add(Outcome("skipped", store.name, order_id, sku, row,
                           message="already registered on Back Market"))
        return
    what = ", ".join(f"{'IMEI' if k == 'imei' else 'serial'} {v}" for k, v in to_send.items())
    if dry_run:
        report.add(Outcome("would-send", store.name, order_id, sku, row, message=what))
        return
    client = client_for(store)
    try:
        fresh = client.get_order(order_id)
    except OfferError as exc:
        if exc.status == 404:
            fail("order_id", f"order {order_id} is unknown to Back Market ({exc.message})",
                 store.name, exc.request_id)
            return
        raise
    _save(state, store, fresh)
    base = {"account": store.account, "orderline_id": line["orderline_id"],
            "order_id": order_id, "store": store.name, "sku": sku}
    live = _live_identifiers(fresh, line["orderline_id"])
    to_send = _identifiers_to_send(to_send, live)
    if isinstance(to_send, str):
        fail(to_send, _conflict(to_send, live, wanted), store.name)
        return
    if not to_send:  # registered in the back office, or by a run whose answer was lost
        state.orders.record_line_identifier({**base, **live, "status": "confirmed"})
        report.add(Outcome("skipped", store.name, order_id, sku, row,
                           message="already registered on Back Market"))
        return
    try:
        client.update_orderline(line["orderline_id"], to_send)
    except OutcomeUnknown as exc:
        live = _live_identifiers(client.get_order(order_id), line["orderline_id"])
        if all(live.get(k) == v for k, v in to_send.items()):
            state.orders.record_line_identifier({**base, **to_send, "status": "confirmed"})
            report.add(Outcome("sent", store.name, order_id, sku, row, message=what))
            return
        message = (f"Back Market's answer was lost ({exc.message}) and the line does not show "
                   "the identifier: the next run sends it")
        state.orders.record_line_identifier({**base, "status": "failed", "error": message})
        fail(next(iter(to_send)), message, store.name)
        return
    except OfferError as exc:
        message = f"Back Market refused: {exc.message}"
        state.orders.record_line_identifier({**base, "status": "failed", "error": message,
                                             "request_id": exc.request_id})
        fail(next(iter(to_send)), message, store.name, exc.request_id)
        return
    state.orders.record_line_identifier({**base, **to_send, "status": "confirmed"})
    report.add(Outcome("sent", store.name, order_id, sku, row, message=what))


def _identifiers_to_send(wanted: Mapping[str, str | None], known: Mapping[str, Any]
                         ) -> dict[str, str] | str:
    """The identifiers still to register, or the name of one already registered with
    another value (Back Market cannot correct it)."""
    to_send: dict[str, str] = {}
    for name, value in wanted.items():
        if not value:
            continue
        current = known.get(name) or None
        if current is None:
            to_send[name] = value
        elif current != value:
            return name
    return to_send


def _conflict(name: str, known: Mapping[str, Any], wanted: Mapping[str, str | None]) -> str:
    label = "IMEI" if name == "imei" else "serial number"
    return (f"the line already has the {label} {known[name]} (this row says {wanted[name]}); "
            "Back Market cannot correct it. Nothing was sent")


def _live_identifiers(order: Mapping[str, Any], orderline_id: int) -> dict[str, str | None]:
    for line in order.get("orderlines") or []:
        if isinstance(line, Mapping) and line.get("id") == orderline_id:
            return {name: (str(line[name]) if line.get(name) else None)
                    for name in ("imei", "serial_number")}
    return {"imei": None, "serial_number": None}
