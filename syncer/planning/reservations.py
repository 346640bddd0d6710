"""Reservations: units of pulled order lines not shipped yet, held back from the catalog stock.

Back Market lowers a listing's quantity itself when it sells; the merchant's catalog export
often counts that sale only later. Planning from the export alone would raise the quantity
again and sell units already promised to a buyer. With ``[orders] reserve_unshipped = true``
the quantity a SKU may publish is its stock minus the units of its *reserving* lines, before
the safety stock and the ``max_quantity`` cap, never below 0 (validation subtracts them);
without it the plan only says how many units of how many SKUs it raises above what Back
Market lowered.

When a line reserves (the rule): from the pull that stores it, while Back Market shows it in
a state before shipping or cancellation (new, on hold, pending payment, paid, accepted). It
stops reserving once it is shipped (the unit left the shelf: an export counts it, sooner or
later) or cancelled, refunded or not paid (the sale is off). The catalog's own timing is not
used: a file written after a sale may still come from a system that does not know the sale,
and trusting it would oversell. The price of the seller-safe choice: an export that already
counts an unshipped sale has it subtracted twice until the line ships, which under-sells
those units for a while; it never oversells them.

Pure: fed by ``StateStore.orders.order_line_units`` (sku, quantity, line state of pulled lines).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from syncer.core.offers import sku_key

# Orderline states (Back Market's spec) in which the unit is sold and still on the shelf.
RESERVING_LINE_STATES: Final = frozenset({0, 9, 8, 1, 2})
SETTING: Final = "[orders] reserve_unshipped"


def unshipped_units(lines: Iterable[tuple[str, int, int]]) -> dict[str, int]:
    """SKU key -> units of the lines (sku, quantity, line state) that still reserve."""
    units: dict[str, int] = {}
    for sku, quantity, state in lines:
        if state in RESERVING_LINE_STATES and quantity > 0 and sku:
            key = sku_key(sku)
            units[key] = units.get(key, 0) + quantity
    return units


def _units(count: int) -> str:
    return f"{count} unit{'s' if count != 1 else ''}"


def _skus(count: int) -> str:
    return f"{count} SKU{'s' if count != 1 else ''}"


def reserved_note(store: str, reserved: Mapping[str, int]) -> str | None:
    """The plan's note on the units held back in a store's offers (SKU key -> units)."""
    if not reserved:
        return None
    return (f"store {store}: {_units(sum(reserved.values()))} of {_skus(len(reserved))} "
            "reserved for pulled, unshipped order lines (orders.reserve_unshipped): their "
            "quantity is the catalog's stock minus those units, until the lines ship or are "
            "cancelled")


def unshipped_note(store: str, raised: Mapping[str, int]) -> str | None:
    """The plan's note, without reservations, on the SKUs whose quantity it raises while
    pulled order lines of theirs are not shipped (SKU key -> unshipped units)."""
    if not raised:
        return None
    return (f"store {store}: this plan raises the quantity of {_skus(len(raised))} with "
            f"{_units(sum(raised.values()))} in pulled, unshipped order lines; Back Market "
            "lowered them when they sold, and a catalog export that does not count those "
            f"sales yet sells them again. Set {SETTING} = true to hold them back")
