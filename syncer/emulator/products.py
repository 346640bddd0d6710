"""The emulator's products: Back Market's catalog of products (by UUID, EAN or Back Market
id), the product proposals a batch row with an unknown EAN makes and their review, model
families, and the category tree (``GET /ws/category/tree``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any, Final, cast

from stdnum import ean as stdnum_ean

from syncer.emulator.changes import MAX_INT, Changes, integer, money
from syncer.emulator.http import Call, HttpError, Reply, Router, error_v1
from syncer.emulator.model import Model, Product, Shared

__all__ = ["CATEGORY_TREE", "PRODUCT_COLUMNS", "Products", "normal_ean", "product_id_for_ean",
           "valid_ean"]

# A small category tree, in the spec's `CategoryTree` shape: the leaves' marketplace ids are
# what a product proposal's `category_id` names, their attributes what it must provide.
CATEGORY_TREE: Final[list[dict[str, Any]]] = [
    {"category_id": 1, "category_name": "Smartphones & tablets", "marketplace_category_id": -1,
     "is_leaf": False, "attributes": [], "childrens": [
         {"category_id": 2, "category_name": "Smartphones", "marketplace_category_id": 2,
          "is_leaf": True, "childrens": [], "attributes": [
              {"field": "color", "field_name": "Color", "type": 2, "allowed_values": "",
               "required": True},
              {"field": "storage", "field_name": "Storage", "type": 3,
               "allowed_values": "32 GB,64 GB,128 GB,256 GB,512 GB,1 TB", "required": True},
              {"field": "network", "field_name": "Network", "type": 3,
               "allowed_values": "Unlocked,Locked", "required": False}]},
         {"category_id": 3, "category_name": "Tablets", "marketplace_category_id": 3,
          "is_leaf": True, "childrens": [], "attributes": [
              {"field": "color", "field_name": "Color", "type": 2, "allowed_values": "",
               "required": True}]}]},
    {"category_id": 4, "category_name": "Computers", "marketplace_category_id": -4,
     "is_leaf": False, "attributes": [], "childrens": [
         {"category_id": 5, "category_name": "Laptops", "marketplace_category_id": 5,
          "is_leaf": True, "childrens": [], "attributes": [
              {"field": "processor", "field_name": "Processor", "type": 2,
               "allowed_values": "", "required": True},
              {"field": "ram", "field_name": "RAM", "type": 1, "allowed_values": "",
               "required": False}]}]},
]


def _leaves(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        if node["is_leaf"]:
            yield node
        yield from _leaves(node["childrens"])


CATEGORY_LEAVES: Final = {leaf["marketplace_category_id"]: leaf
                          for leaf in _leaves(CATEGORY_TREE)}
PRODUCT_COLUMNS: Final[frozenset[str]] = frozenset(
    {"title", "description", "brand", "price_new", "weight", "category_id", "width", "height",
     "depth"} | {f"image{n}" for n in range(1, 7)}
    | {a["field"] for leaf in CATEGORY_LEAVES.values() for a in leaf["attributes"]})


# Product ids are uuid5 of the EAN in this namespace, so they are the same in every run.
PRODUCT_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://www.backmarket.fr/ws/products")
_TITLES: Final = (
    "iPhone 13 - 128 GB - Midnight - Unlocked",
    "Galaxy S21 5G - 128 GB - Phantom Gray - Unlocked",
    "iPad Air (2020) - 64 GB - Sky Blue - Wi-Fi",
    'MacBook Air 13" (2020) - M1 - 8 GB RAM - 256 GB SSD - QWERTY',
    "Pixel 7 - 128 GB - Obsidian - Unlocked",
    "Apple Watch Series 7 - 45 mm - GPS",
    "Nintendo Switch OLED - 64 GB - White",
    "iPhone 12 mini - 64 GB - Blue - Unlocked",
)


def product_id_for_ean(ean: str) -> str:
    """The product UUID the emulator gives the product of an EAN (stable across runs)."""
    return str(uuid.uuid5(PRODUCT_NAMESPACE, normal_ean(ean)))


def normal_ean(ean: str) -> str:
    code = ean.strip()
    # A UPC-A is the EAN-13 with a leading zero: both spellings name one product.
    return code.zfill(13) if len(code) == 12 else code


def valid_ean(code: str) -> bool:
    code = code.strip()
    return len(code) in (8, 12, 13) and bool(stdnum_ean.is_valid(code))


class Products:
    """The products part of an emulator: made known, resolved from a batch row, proposed."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    @property
    def model(self) -> Model:
        return self.shared.model

    def install(self, router: Router) -> None:
        router.add("GET", r"/ws/category/tree", self.category_tree)
        router.add("GET", r"/ws/category/tree/(?P<category>-?\d+)", self.category_branch)

    def add_product(
        self, *, ean: str | None = None, product_id: str | None = None, title: str | None = None,
        family: str | None = None,
    ) -> dict[str, Any]:
        """Make a product known (needed when ``auto_products`` is off), of a model ``family``
        if given (``Faults.resolve_products`` resolves it to the family's first product)."""
        if ean is None and product_id is None:
            raise ValueError("a product needs an EAN or a product id")
        if ean is not None and not valid_ean(ean):
            raise ValueError(f"{ean!r} is not a valid EAN")
        if family is not None and not isinstance(family, str):
            raise ValueError("a product's family is a name (a string)")
        pid = str(uuid.UUID(product_id)) if product_id else product_id_for_ean(cast(str, ean))
        product = self.model.products.get(pid) or self.new_product(
            pid, None if ean is None else normal_ean(ean)
        )
        if title:
            product.title = title
        if family:
            product.family = family
        self.shared.dirty.products.add(pid)
        return asdict(product)

    def new_product(self, product_id: str, ean: str | None) -> Product:
        digits = ean or str(uuid.UUID(product_id).int)
        product = Product(
            product_id=product_id,
            backmarket_id=self.model.next_backmarket_id,
            title=_TITLES[int(digits[-6:]) % len(_TITLES)],
            ean=ean,
        )
        self.model.next_backmarket_id += 1
        self.model.index(product)
        self.shared.dirty.products.add(product_id)
        return product

    def forget_product(self, product: Product) -> None:
        self.model.forget(product)
        self.shared.dirty.products.add(product.product_id)

    def resolve_product(self, cells: Mapping[str, str], changes: Changes) -> Product | None:
        """The product a batch row's listing is for: the one it names, or with
        ``resolve_products`` the first product of that one's model family."""
        product = self._named_product(cells, changes)
        if product is None or product.family is None or not self.shared.faults.resolve_products:
            return product
        return min((p for p in self.model.products.values()
                    if p.family == product.family and p.status == "validated"),
                   key=lambda p: p.backmarket_id, default=product)

    def _named_product(self, cells: Mapping[str, str], changes: Changes) -> Product | None:
        """The product a batch row names: product_id wins over backmarket_id, then ean."""
        auto = self.shared.config.auto_products
        if "product_id" in cells:
            try:
                pid = str(uuid.UUID(cells["product_id"].strip()))
            except ValueError:
                changes.error("product_id", f"product_id {cells['product_id']!r} is not a UUID")
                return None
            product = self.model.products.get(pid) or (
                self.new_product(pid, None) if auto else None)
            if product is None:
                changes.error("product_id", f"product {pid} not found")
            return product
        if "backmarket_id" in cells:
            number = integer(cells["backmarket_id"], "backmarket_id", changes, minimum=1)
            if number is None:
                return None
            found = self.model.product_by_number.get(number)
            if found is None:
                changes.error("backmarket_id", f"product {number} not found")
                return None
            return self.model.products[found]
        if "ean" in cells:
            code = cells["ean"].strip()
            if not valid_ean(code):
                changes.error("ean", f"ean {code!r} is not a valid EAN (length or check digit)")
                return None
            code = normal_ean(code)
            known = self.model.product_by_ean.get(code)
            if known is not None:
                self._update_proposal(self.model.products[known], cells, changes)
                return self.model.products[known]
            if auto:
                return self.new_product(product_id_for_ean(code), code)
            if any(name in cells for name in PRODUCT_COLUMNS):
                return self._propose(code, cells, changes)
            changes.error(
                "ean", f"no product with ean {code}: add the product columns (title, "
                       "category_id, ...) to propose it")
        return None

    # -- product proposals ------------------------------------------------------------------

    def _check_proposal(self, ean: str, cells: Mapping[str, str], changes: Changes) -> bool:
        """Back Market's checks of a product proposal: mandatory fields, a leaf category and
        its mandatory attributes, allowed values; then its review (``reject_eans``)."""
        before = len(changes.errors)
        for name in ("title", "description", "brand", "price_new", "weight", "category_id",
                     "image1"):
            if not cells.get(name):
                changes.error(name, f"{name} is required to propose a product")
        if len(cells.get("title", "")) > 200:
            changes.error("title", "title is longer than 200 characters")
        if len(cells.get("brand", "")) > 100:
            changes.error("brand", "brand is longer than 100 characters")
        if cells.get("price_new"):
            money(cells["price_new"], "price_new", changes, positive=True)
        if cells.get("weight"):
            integer(cells["weight"], "weight", changes, minimum=2)
        for number in range(1, 7):
            image = cells.get(f"image{number}", "")
            if image and not re.match(r"https?://", image):
                changes.error(f"image{number}", f"image{number} must be an http(s) URL")
        leaf = None
        if cells.get("category_id"):
            category = integer(cells["category_id"], "category_id", changes, minimum=-MAX_INT)
            leaf = CATEGORY_LEAVES.get(category) if category is not None else None
            if category is not None and leaf is None:
                changes.error("category_id", f"category {category} is not a leaf category "
                                             "(see GET /ws/category/tree)")
        category_name = leaf["category_name"] if leaf else ""
        for attribute in leaf["attributes"] if leaf else []:
            value = cells.get(attribute["field"], "")
            allowed = [v.strip() for v in attribute["allowed_values"].split(",") if v.strip()]
            if attribute["required"] and not value:
                changes.error(attribute["field"], f"{attribute['field_name']} "
                              f"({attribute['field']}) is required in {category_name}")
            elif value and allowed and value not in allowed:
                changes.error(attribute["field"], f"{attribute['field']} must be one of "
                                                  f"{', '.join(allowed)}, got {value!r}")
        reason = self.shared.faults.reject_eans.get(ean)
        if reason and len(changes.errors) == before:
            changes.error(None, f"product proposal rejected by Back Market: {reason}")
        return len(changes.errors) == before

    def _propose(self, ean: str, cells: Mapping[str, str], changes: Changes) -> Product | None:
        if not self._check_proposal(ean, cells, changes):
            changes.proposal_refused = True
            return None
        product = self.new_product(product_id_for_ean(ean), ean)
        product.status = "pending"
        product.proposed_at = self.shared.clock()
        product.content = {k: v for k, v in cells.items() if k in PRODUCT_COLUMNS}
        product.title = cells.get("title") or product.title
        changes.proposed = product
        changes.proposed_new = True
        return product

    def _update_proposal(self, product: Product, cells: Mapping[str, str],
                         changes: Changes) -> None:
        """A pending proposal may be updated by its proposer; a validated product is not
        changed, and no error says so (as Back Market documents)."""
        if product.status != "pending" or not any(n in cells for n in PRODUCT_COLUMNS):
            return
        if self._check_proposal(product.ean or "", cells, changes):
            product.content = {k: v for k, v in cells.items() if k in PRODUCT_COLUMNS}
            product.title = cells.get("title") or product.title
            self.shared.dirty.products.add(product.product_id)
        changes.proposed = product

    def review(self, now: float) -> None:
        """Back Market's team validates pending proposals once ``review_delay`` has passed."""
        for product in self.model.products.values():
            if product.status == "pending" and product.proposed_at is not None \
                    and now >= product.proposed_at + self.shared.config.review_delay:
                product.status = "validated"
                self.shared.dirty.products.add(product.product_id)

    def category_tree(self, call: Call) -> Reply:
        return Reply(200, CATEGORY_TREE)

    def category_branch(self, call: Call) -> Reply:
        wanted = int(call.params["category"])

        def find(nodes: list[dict[str, Any]]) -> dict[str, Any] | None:
            for node in nodes:
                if node["category_id"] == wanted:
                    return node
                found = find(node["childrens"])
                if found is not None:
                    return found
            return None

        node = find(CATEGORY_TREE)
        if node is None:
            raise HttpError(error_v1(404, "not_found", f"category {wanted} not found"))
        return Reply(200, node)
