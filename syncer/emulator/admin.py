"""The emulator's own endpoints, under ``/_emulator/`` (not Back Market's; no
authentication, never faulted): ``GET listings?token=``, ``GET|POST faults`` (JSON merged
into ``Faults``), ``POST sell`` ``{token, sku, quantity}``, ``POST products``
``{ean | product_id, title, family}``, ``POST reset``. The orders and the competitive market
add theirs (``syncer.emulator.orders``, ``syncer.emulator.market``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, fields

from syncer.emulator.config import UNREPORTED, Faults
from syncer.emulator.http import Call, HttpError, Reply, Router, error_v1
from syncer.emulator.listings import Listings
from syncer.emulator.model import Shared
from syncer.emulator.products import Products

__all__ = ["Admin"]


class Admin:
    """The admin endpoints of one emulator; ``reset_all`` forgets everything (its reset)."""

    def __init__(self, shared: Shared, listings: Listings, products: Products,
                 reset_all: Callable[[], None]) -> None:
        self.shared = shared
        self.listings = listings
        self.products = products
        self.reset_all = reset_all

    def install(self, router: Router) -> None:
        router.add("GET", r"/_emulator/listings", self.get_listings, admin=True)
        router.add("GET", r"/_emulator/faults", self.get_faults, admin=True)
        router.add("POST", r"/_emulator/faults", self.set_faults, admin=True)
        router.add("POST", r"/_emulator/sell", self.sell, admin=True)
        router.add("POST", r"/_emulator/products", self.add_product, admin=True)
        router.add("POST", r"/_emulator/reset", self.reset, admin=True)

    def get_listings(self, call: Call) -> Reply:
        return Reply(200, self.listings.dumps(self.shared.admin_token(call.query.get("token"))))

    def get_faults(self, call: Call) -> Reply:
        return Reply(200, asdict(self.shared.faults))

    def set_faults(self, call: Call) -> Reply:
        body = call.json_object()
        known = {f.name for f in fields(Faults)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise call.bad_request(f"unknown fault(s): {', '.join(unknown)}")
        for name, value in body.items():
            if name in ("reject_skus", "reject_eans"):
                if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()
                ):
                    raise call.bad_request(f"{name} must map SKUs to messages")
            elif name == "reject_code":
                if value is not None and (not isinstance(value, str) or not value):
                    raise call.bad_request("reject_code must be a non-empty string or null")
            elif name == "echo_auth_skus":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise call.bad_request("echo_auth_skus must be a list of SKUs")
            elif name == "unreported_skus":
                if not isinstance(value, dict) or not all(
                    isinstance(k, str) and v in UNREPORTED for k, v in value.items()
                ):
                    raise call.bad_request(
                        f"unreported_skus must map SKUs to one of: {', '.join(UNREPORTED)}")
            elif name in ("waf_block", "outage", "fail_tasks", "reuse_listings",
                          "resolve_products"):
                if not isinstance(value, bool):
                    raise call.bad_request(f"{name} must be true or false")
            elif name == "seed":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise call.bad_request("seed must be an integer or null")
                self.shared.rng = random.Random(value)
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise call.bad_request(f"{name} must be a non-negative number")
            elif name.startswith("share_") and value > 1:
                raise call.bad_request(f"{name} is a share: between 0 and 1")
            setattr(self.shared.faults, name, value)
        return Reply(200, asdict(self.shared.faults))

    def sell(self, call: Call) -> Reply:
        body = call.json_object()
        token = self.shared.admin_token(body.get("token"))
        sku, quantity = body.get("sku"), body.get("quantity", 1)
        if not isinstance(sku, str) or isinstance(quantity, bool) or not isinstance(quantity, int):
            raise call.bad_request("expected {token, sku, quantity}")
        try:
            self.listings.sell(token, sku, quantity)
        except KeyError as exc:
            raise HttpError(error_v1(404, "not_found", str(exc.args[0]))) from None
        except ValueError as exc:
            raise HttpError(error_v1(409, "conflict", str(exc))) from None
        found = self.shared.seller(token).by_sku(sku)
        assert found is not None
        return Reply(200, self.listings.dump(found))

    def add_product(self, call: Call) -> Reply:
        body = call.json_object()
        try:
            return Reply(
                200,
                self.products.add_product(
                    ean=body.get("ean"), product_id=body.get("product_id"), title=body.get("title"),
                    family=body.get("family"),
                ),
            )
        except ValueError as exc:
            raise call.bad_request(str(exc)) from None

    def reset(self, call: Call) -> Reply:
        self.reset_all()
        return Reply(200, {"reset": True})
