"""Confirmed price moves: what a publication records for pricing's day budget and cooldown.

A price move pricing planned (a change with a ``pricing`` trace) that Back Market confirmed
(a real-time update acknowledged, a batch row its task reported done) is kept, from the price
confirmed before to the one sent, in the state's ``price_move`` table
(``state.market.record_price_moves``) and read back by the planner as ``pricing.Move``
history. A price the catalog changed is not a move of pricing: stores without pricing rules
write nothing more than before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from syncer.core.offers import FIELDS

PRICE = FIELDS.index("price")


def moves_of(changes: Iterable[Any]) -> list[tuple[str, Decimal, Decimal]]:
    """(SKU key, old, new) of the changes pricing made that move a confirmed price (a
    ``diff.Change``: ``field_changes`` holds ("price", old, new); a new offer has no old
    price)."""
    found = []
    for change in changes:
        if change.changes is None or change.pricing is None:
            continue
        for name, old, new in change.changes:
            if name != "price" or old is None or new is None:
                continue
            try:
                found.append((change.key, Decimal(str(old)), Decimal(str(new))))
            except InvalidOperation:
                continue
    return found


def record_confirmed(state: Any, store: str, changes: Sequence[Any],
                     at: datetime | None = None) -> None:
    """Records the price moves among these confirmed changes."""
    moves = moves_of(changes)
    if moves:
        state.market.record_price_moves(store, moves, at or datetime.now(UTC))
