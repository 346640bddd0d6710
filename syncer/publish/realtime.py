"""The real-time lane: one change sent as a single-listing update (POST /ws/listings/{id}),
only the fields that changed, when no batch-only field is among them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from syncer.core.crashpoints import crashpoint
from syncer.core.offers import FIELD_INDEX as F
from syncer.core.offers import Published, ShippingOption, parse_shipping
from syncer.core.snapshot import SnapshotEntry
from syncer.errors import OfferError, RetriableError
from syncer.planning.changes import Change
from syncer.publish.outcomes import Ledger, PublishResult


class RealTimeLane:
    """Sends single-listing updates for one store through the ``ledger``."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.store, self.client, self.log = ledger.store, ledger.client, ledger.log

    def send(self, change: Change, fields: tuple[str, ...],
                     entry: SnapshotEntry | None, batch: list[Change],
                     result: PublishResult) -> bool:
        """One real-time update. False when the hourly budget has no line left for it."""
        self.ledger.keep_lease()
        listing_id = (entry.listing_id if entry else None) or change.listing_id
        taken = 0
        self.ledger.sent_at = time.time()
        try:
            if listing_id is None:
                found = self.client.find_listing(change.sku)
                listing_id = None if found is None else str(found["id"])
            if listing_id is None:
                if change.action == "zero":
                    # Nothing on Back Market to take offline: the outcome already holds.
                    self.log.warning("zero of a listing Back Market does not have",
                                     sku=change.sku)
                    self.ledger.ack(change, None, result)
                else:
                    batch.append(change)  # the listing is gone: create it again
                return True
            body = single_update_body(fields, change.target, entry.published if entry else None,
                                      self.store.currency or "EUR")
            taken = self.ledger.take(1)
            if not taken:
                return False
            crashpoint("single:before-request")
            answer = self.client.update_listing(listing_id, body)
            crashpoint("single:after-request")
        except OfferError as exc:
            if exc.status == 404:
                self.ledger.refund(taken)  # no listing, no line spent
                if change.action != "zero":
                    batch.append(change)
                    return True
            self.ledger.fail(change, exc, result)
            return True
        except RetriableError as exc:
            self.ledger.refund(taken)
            self.ledger.unavailable_once(change, exc, result)
            return True
        self.ledger.unavailable = 0
        self.ledger.ack(change, str(answer.get("id") or listing_id), result,
                        request_id=self.client.last_request_id, sent_at=self.ledger.sent_at)
        return True


def single_update_body(fields: Sequence[str], target: Published, confirmed: Published | None,
                       currency: str) -> dict[str, Any]:
    """The body of POST /ws/listings/{id}: only what changed, money as strings."""
    body: dict[str, Any] = {}
    for name in fields:
        value = target[F[name]]
        if name == "quantity":
            body["quantity"] = value
        elif name in ("price", "currency"):
            body["price"] = target[F["price"]]
            body["currency"] = target[F["currency"]] or currency
        elif name == "warranty_delay":
            body["warranty_delay"] = value
        elif name in ("comment", "min_price"):
            body[name] = value
        elif name == "shipping":
            new = parse_shipping(_text(value))
            old = parse_shipping(_text(confirmed[F["shipping"]])) if confirmed else ()
            body.update(shipping_fields(new, max(len(new), len(old))))
    return body


def shipping_fields(options: Sequence[ShippingOption], slots: int) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for number in range(1, slots + 1):
        if number <= len(options):
            option = options[number - 1]
            body[f"shipper_{number}"] = option.shipper
            body[f"shipping_price_{number}"] = f"{option.price:.2f}"
            body[f"shipping_delay_{number}"] = option.delay_hours
        else:
            body[f"shipper_{number}"] = None
            body[f"shipping_price_{number}"] = None
            body[f"shipping_delay_{number}"] = None
    return body


def _text(value: str | int | None) -> str | None:
    return None if value is None else str(value)
