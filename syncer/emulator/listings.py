"""The emulator's listings: one per SKU per seller, serving every market of the platform
(global stock, a price and shipping per market), read with ``GET /ws/listings``,
``/ws/listings/detail`` and ``/ws/listings/{id}``, updated one at a time with
``POST /ws/listings/{id}`` (batch updates are ``syncer.emulator.tasks``).

A single-listing update ignores a field its request body in the spec lacks, as the real API
does (production integrations send ``pub_state``), and lists it in the exchange's
``ignored``; ``EmulatorConfig.strict_fields`` refuses it instead (400).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from syncer.emulator.changes import SINGLE_UPDATE_FIELDS, apply_changes, parse_changes
from syncer.emulator.config import GRADES
from syncer.emulator.http import (
    Call,
    HttpError,
    Reply,
    Router,
    error_v1,
    page_params,
    paged,
    query_int,
)
from syncer.emulator.model import Listing, Market, Shared, sku_key

__all__ = ["Listings"]


class Listings:
    """The listings part of an emulator: Back Market's endpoints and the listings' shapes."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def install(self, router: Router) -> None:
        """The reads and the single update (the batch endpoint is the tasks part's)."""
        listing = r"/ws/listings/(?P<listing>[^/]+)"
        router.add("GET", r"/ws/listings", self.get_listings)
        router.add("GET", r"/ws/listings/detail", self.get_listing_detail)
        router.add("GET", listing, self.get_listing)
        router.add("POST", listing, self.post_listing, string_errors=True)

    def dumps(self, token: str) -> list[dict[str, Any]]:
        """Every listing of that seller with every country's data, by listing_id."""
        seller = self.shared.seller(token)
        items = sorted(seller.listings.values(), key=lambda item: item.listing_id)
        return [self.dump(item) for item in items]

    def listing(self, token: str, sku: str, locale: str) -> dict[str, Any] | None:
        """The listing of that SKU as ``GET /ws/listings/{id}`` shows it in that country."""
        if locale not in self.shared.markets:
            raise ValueError(
                f"{locale!r} is not a market of the {self.shared.config.platform} platform")
        found = self.shared.seller(token).by_sku(sku)
        return None if found is None else self.public(found, locale)

    def sell(self, token: str, sku: str, quantity: int = 1) -> None:
        """An order on Back Market: the listing's global stock goes down by ``quantity``."""
        found = self.shared.seller(token).by_sku(sku)
        if found is None:
            raise KeyError(f"no listing with SKU {sku!r}")
        if quantity <= 0:
            raise ValueError("an order sells at least one unit")
        if quantity > found.quantity:
            raise ValueError(f"only {found.quantity} of {found.sku} in stock")
        found.quantity -= quantity
        self.shared.touch(token, found)

    def get_listings(self, call: Call) -> Reply:
        seller = self.shared.seller(call.token)
        page, size = page_params(call)
        state = query_int(call, "publication_state", minimum=0)
        if state is not None and state > 4:
            raise call.bad_request("publication_state must be one of 0, 1, 2, 3, 4")
        min_quantity = query_int(call, "min_quantity")
        max_quantity = query_int(call, "max_quantity")
        selected = [
            item
            for item in sorted(seller.listings.values(), key=lambda item: item.listing_id)
            if (state is None or self.publication_state(item, call.locale) == state)
            and (min_quantity is None or item.quantity >= min_quantity)
            and (max_quantity is None or item.quantity <= max_quantity)
        ]
        return paged(call, selected, page, size, lambda item: self.public(item, call.locale))

    def get_listing(self, call: Call) -> Reply:
        found = self._find(call, call.params["listing"])
        return Reply(200, {**self.public(found, call.locale), "statuscode": 200})

    def get_listing_detail(self, call: Call) -> Reply:
        keys = [k for k in ("sku", "id", "listing_id") if call.query.get(k, "").strip()]
        if not keys:
            raise call.bad_request("one of the query parameters sku, id, listing_id is needed")
        seller = self.shared.seller(call.token)
        found: Listing | None = None
        for key in keys:
            value = call.query[key].strip()
            if key == "sku":
                candidate = seller.by_sku(value)
            elif key == "id":
                candidate = self._find(call, value, as_uuid=True)
            else:
                if not re.fullmatch(r"\d+", value):
                    raise call.bad_request(f"listing_id must be an integer, got {value!r}")
                candidate = self._find(call, value)
            if candidate is None or (found is not None and candidate is not found):
                raise HttpError(error_v1(404, "not_found", "Listing not found"))
            found = candidate
        assert found is not None
        return Reply(200, {**self.public(found, call.locale), "statuscode": 200})

    def _find(self, call: Call, ident: str, *, as_uuid: bool = False) -> Listing:
        """The caller's listing by UUID or (deprecated) integer id, else 404."""
        seller = self.shared.seller(call.token)
        key: str | None
        if not as_uuid and re.fullmatch(r"\d+", ident):
            key = seller.by_number.get(int(ident))
        else:
            try:
                key = seller.by_id.get(str(uuid.UUID(ident)))
            except ValueError:
                raise call.bad_request(
                    f"listing id must be a UUID or an integer, got {ident!r}"
                ) from None
        if key is None:
            raise HttpError(error_v1(404, "not_found", f"Listing {ident} not found"))
        return seller.listings[key]

    def post_listing(self, call: Call) -> Reply:
        """Real-time update of the fields given (one SKU line of the hourly budget)."""
        found = self._find(call, call.params["listing"])
        body = call.json_object()
        unknown = sorted(set(body) - SINGLE_UPDATE_FIELDS)
        if not self.shared.config.strict_fields:
            # As the real API: a field it does not know is ignored (and logged here).
            call.ignored = tuple(unknown)
            body = {name: value for name, value in body.items() if name not in unknown}
        self.shared.spend_sku_lines(self.shared.seller(call.token), 1, self.shared.clock())
        rejection = self.rejection(found.sku, call.headers.get("authorization", ""))
        if rejection:
            if self.shared.faults.reject_code is None:
                raise call.bad_request(rejection)
            raise HttpError(error_v1(400, self.shared.faults.reject_code, rejection))
        if unknown and self.shared.config.strict_fields:
            raise call.bad_request(
                f"unknown field(s) {', '.join(unknown)}: this endpoint accepts"
                f" {', '.join(sorted(SINGLE_UPDATE_FIELDS))} (strict_fields)"
            )
        changes = parse_changes(body, call.locale, found.markets.get(call.locale),
                                self.shared.config)
        if changes.errors:
            raise call.bad_request("; ".join(message for _, message in changes.errors))
        messages = apply_changes(found, call.locale, changes)
        self.shared.touch(call.token, found)
        data = {**self.public(found, call.locale), "statuscode": 200}
        if any(name.startswith(("shipper", "shipping")) for name in body):
            data["shippings_response"] = messages
        return Reply(200, data)

    def publication_state(self, listing: Listing, locale: str) -> int:
        market = listing.markets.get(locale)
        if market is None or market.price is None:
            return 0  # missing price
        product = self.shared.model.products.get(listing.product_id)
        if product is not None and product.status == "pending":
            return 1  # pending validation of its product
        return 2 if listing.quantity > 0 and not listing.draft else 3

    def public(self, listing: Listing, locale: str) -> dict[str, Any]:
        """The listing in one country, in the spec's ``ListingPublic`` shape."""
        market = listing.markets.get(locale) or Market()
        product = self.shared.model.products[listing.product_id]
        return {
            "id": listing.id,
            "listing_id": listing.listing_id,
            "product_id": listing.product_id,
            "backmarket_id": product.backmarket_id,
            "title": product.title,
            "shippings": shippings(market, locale),
            "state": GRADES[listing.grade],
            "grade": listing.grade,
            "quantity": listing.quantity,
            "currency": self.shared.markets[locale],
            "sku": listing.sku,
            "publication_state": self.publication_state(listing, locale),
            "warranty_delay": (
                listing.warranty_delay if market.warranty_delay is None else market.warranty_delay
            ),
            "price": market.price or "0.00",
            "comment": market.comment,
            "min_price": market.min_price,
            # A number on the real API (the spec says a string): 199 or 199.9. Required and
            # not nullable: 0 stands for "no maximum set".
            "max_price": json_number(market.max_price or "0"),
            # Deprecated (broken TouchID of an iPhone), still on every real listing.
            "snowden": False,
        }

    def dump(self, listing: Listing) -> dict[str, Any]:
        """The listing with every country's data (admin view, not a Back Market shape)."""
        product = self.shared.model.products[listing.product_id]
        markets = {}
        for locale, market in listing.markets.items():
            data = asdict(market)
            data["shippings"] = shippings(market, locale)
            data["publication_state"] = self.publication_state(listing, locale)
            markets[locale] = data
        return {
            "id": listing.id,
            "listing_id": listing.listing_id,
            "sku": listing.sku,
            "product_id": listing.product_id,
            "backmarket_id": product.backmarket_id,
            "ean": product.ean,
            "title": product.title,
            "grade": listing.grade,
            "state": GRADES[listing.grade],
            "quantity": listing.quantity,
            "warranty_delay": listing.warranty_delay,
            "draft": listing.draft,
            "markets": markets,
        }

    def rejection(self, sku: str, authorization: str) -> str | None:
        """Why the marketplace refuses this SKU (configured or drawn), else None."""
        wanted = sku_key(sku)
        if any(sku_key(echoed) == wanted for echoed in self.shared.faults.echo_auth_skus):
            return f"request refused by the gateway; request headers: Authorization: " \
                   f"{authorization}"
        for rejected, message in self.shared.faults.reject_skus.items():
            if sku_key(rejected) == wanted:
                return message
        if self.shared.draw(self.shared.faults.share_reject):
            return f"listing {sku} rejected by the marketplace (emulated fault)"
        return None


def json_number(amount: str) -> int | float:
    """An amount as the real API writes ``max_price``: an integer when whole, else a float
    (only on the wire: the model keeps the canonical string)."""
    value = Decimal(amount)
    return int(value) if value == value.to_integral_value() else float(value)


def shippings(market: Market, locale: str) -> list[dict[str, Any]]:
    return [
        {
            "shipping_price": option["shipping_price"],
            "shipping_delay": option["shipping_delay"],
            "shipper": option["shipper"],
            "shipper_display": option.get("shipper_display") or option["shipper"],
            "country_code": locale,
        }
        for _, option in sorted(market.shippings.items())
    ]
