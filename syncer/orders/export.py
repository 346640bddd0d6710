"""The export of a pull run for the seller's own systems: one CSV (a row per orderline)
and one JSON lines file (an order per line, as Back Market sent it).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from syncer.backmarket import answers
from syncer.errors import ConfigError
from syncer.orders.pull import PullResult
from syncer.reports.tables import csv_cell

EXPORT_COLUMNS: Final = (
    "store", "change", "order_id", "order_state", "country_code", "date_creation",
    "date_modification", "date_payment", "currency", "order_price", "order_shipping_price",
    "orderline_id", "sku", "product", "quantity", "unit_price", "unit_shipping_price",
    "line_state", "first_name", "last_name", "company", "street", "street2", "postal_code",
    "city", "country", "phone", "email", "tracking_number", "shipper", "date_shipping",
)


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
