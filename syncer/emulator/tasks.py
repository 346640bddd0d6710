"""The emulator's batch tasks: ``POST /ws/listings`` takes a CSV catalog and answers a task
id; the task is processed once ``task_delay`` has passed on the injected clock (at the next
request or helper call: no background thread), each row creating or updating a listing, and
``GET /ws/tasks/{id}`` answers its status and result.

A finished task's ``result`` has Back Market's observed shape (``BACKMARKET.md``, "Observed in
production integrations"): ``{"product_success": {key: entry}, "product_errors": {key:
entry}}``, two objects whose keys are the rows' SKUs (``EmulatorConfig.result_key = "sku"``,
the default; a row without a SKU is keyed by its row) or their row numbers (``"row"``: "1" is
the first data row), as the meaning of the real keys is not known. A success entry is the
listing the row created or updated: ``{"sku", "id" (uuid), "listing_id" (int),
"backmarket_id", "product_id", "publication_state", "status"}`` (``sku`` is the listing's,
which is not the row's when a listing was reused); an error entry ``{"sku": str | None,
"code": str, "message": str}``, the message joining each problem ("field: what"). A row in
error changes nothing. A catalog that cannot be read at all fails the task (``action_status``
8, ``last_action_error`` says why). ``Faults.unreported_skus`` leaves chosen rows out of it.
``Emulator.batch_rows`` lists every batch row received, which task results cannot show (a row
sent again for an existing SKU is answered "updated"). A created row without a grade is GOOD,
as integrators report Back Market does.
"""

from __future__ import annotations

import codecs
import re
import uuid
from dataclasses import replace
from typing import Any, Final

from syncer.emulator.batch_csv import CatalogError, count_rows, read_catalog
from syncer.emulator.changes import Changes, apply_changes, parse_changes
from syncer.emulator.http import Call, HttpError, Reply, Router, error_v1
from syncer.emulator.listings import Listings
from syncer.emulator.model import BatchRow, Listing, Model, Seller, Shared, Task, sku_key
from syncer.emulator.products import Products

__all__ = ["Tasks"]

# A created row without a grade makes a GOOD listing, as integrators report Back Market does.
DEFAULT_GRADE: Final = "GOOD"


class Tasks:
    """The batch part of an emulator: tasks received, processed when due, and answered."""

    def __init__(self, shared: Shared, listings: Listings, products: Products) -> None:
        self.shared = shared
        self.listings = listings
        self.products = products

    @property
    def model(self) -> Model:
        return self.shared.model

    def install(self, router: Router) -> None:
        router.add("POST", r"/ws/listings", self.post_listings, string_errors=True)
        router.add("GET", r"/ws/tasks/(?P<task>[^/]+)", self.get_task)

    def tasks(self, token: str) -> list[dict[str, Any]]:
        """Every batch task of that seller, processed or not: id, status, result."""
        return [
            {"task_id": t.task_id, "action_status": t.action_status, "rows": t.rows,
             "result": t.result or {}}
            for t in sorted(self.model.tasks.values(), key=lambda t: t.task_id)
            if t.token == token
        ]

    def post_listings(self, call: Call) -> Reply:
        """The batch endpoint: a CSV catalog becomes a task processed after ``task_delay``."""
        body = call.json_object()
        for name in ("catalog", "quotechar", "delimiter", "encoding"):
            if body.get(name) is None:
                raise call.bad_request(f"parameter {name} not found")
            if not isinstance(body[name], str):
                raise call.bad_request(f"parameter {name} must be a string")
        catalog, quotechar, delimiter, encoding = (
            body["catalog"],
            body["quotechar"],
            body["delimiter"],
            body["encoding"],
        )
        if not catalog.strip():
            raise call.bad_request("parameter catalog is empty")
        for name, value in (("quotechar", quotechar), ("delimiter", delimiter)):
            if len(value) != 1:
                raise call.bad_request(f"parameter {name} must be one character, got {value!r}")
        if quotechar == delimiter:
            raise call.bad_request("parameters quotechar and delimiter must differ")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise call.bad_request(f"parameter encoding: unknown encoding {encoding!r}") from None
        rows = count_rows(catalog, delimiter, quotechar)
        limit = self.shared.config.max_batch_lines
        if rows > limit:
            raise call.bad_request(f"catalog has {rows} lines; at most {limit} are accepted")
        now = self.shared.clock()
        self.shared.spend_sku_lines(self.shared.seller(call.token), rows, now)
        task = Task(
            task_id=self.model.next_task_id,
            token=call.token,
            locale=call.locale,
            catalog=catalog,
            delimiter=delimiter,
            quotechar=quotechar,
            encoding=encoding,
            rows=rows,
            created_at=now,
        )
        self.model.next_task_id += 1
        self.model.tasks[task.task_id] = task
        try:
            received = [cells.get("sku", "") for cells, _ in read_catalog(task)]
        except CatalogError:
            received = []  # the task fails as a whole: no row is processed
        self.shared.batch_rows.extend(
            BatchRow(task.task_id, task.token, task.locale, sku) for sku in received)
        self.model.pending.append(task.task_id)
        self.shared.dirty.tasks.add(task.task_id)
        return Reply(200, {"bodymessage": task.task_id, "statuscode": 200})

    def get_task(self, call: Call) -> Reply:
        ident = call.params["task"]
        task = self.model.tasks.get(int(ident)) if re.fullmatch(r"\d+", ident) else None
        if task is None or task.token != call.token:
            raise HttpError(error_v1(404, "not_found", f"Task {ident} not found"))
        status = task.action_status
        elapsed = self.shared.clock() - task.created_at
        if status == 0 and elapsed >= self.shared.config.task_delay / 2:
            status = 2  # in progress
        return Reply(
            200,
            {
                "task_id": task.task_id,
                "action_status": status,
                "last_action_error": task.last_action_error,
                "result": task.result if task.result is not None else {},
                "statuscode": 200,
            },
        )

    def run_due(self, now: float) -> None:
        self.products.review(now)
        self._run(now)

    def _run(self, now: float) -> None:
        while self.model.pending:
            task = self.model.tasks[self.model.pending[0]]
            if now - task.created_at < self.shared.config.task_delay:
                return
            self.model.pending.pop(0)
            self._process_task(task)

    def _process_task(self, task: Task) -> None:
        self.shared.dirty.tasks.add(task.task_id)
        if task.token not in self.shared.config.tokens:
            task.action_status, task.last_action_error = 8, "seller account not found"
            task.result = {}
            return
        if self.shared.faults.fail_tasks:
            task.action_status, task.result = 8, {}
            task.last_action_error = "internal error while processing the file (emulated fault)"
            return
        try:
            rows = read_catalog(task)
        except CatalogError as exc:
            task.action_status, task.last_action_error, task.result = 8, str(exc), {}
            return
        seller = self.shared.seller(task.token)
        unreported = {sku_key(sku): how for sku, how in self.shared.faults.unreported_skus.items()}
        success: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for row, (cells, problem) in enumerate(rows, start=1):
            how = unreported.get(sku_key(cells.get("sku", "")))
            if how == "skipped":
                continue
            ok, entry = self._process_row(seller, task, cells, problem)
            if how is None:
                sku = cells.get("sku", "").strip()
                key = sku if self.shared.config.result_key == "sku" and sku else str(row)
                (success if ok else errors)[key] = entry
        task.action_status = 9
        task.result = {"product_success": success, "product_errors": errors}

    def _process_row(
        self, seller: Seller, task: Task, cells: dict[str, str], problem: str | None
    ) -> tuple[bool, dict[str, Any]]:
        """One catalog row: create the listing, or update the one with this SKU (or, with
        ``reuse_listings``, the one of its product and grade). Returns whether it succeeded
        and its entry of the task result."""
        sku = cells.get("sku", "").strip()
        existing = seller.by_sku(sku) if sku else None

        def fail(errors: list[tuple[str | None, str]],
                 code: str = "invalid_field") -> tuple[bool, dict[str, Any]]:
            if changes is not None and changes.proposed_new and changes.proposed is not None:
                self.products.forget_product(changes.proposed)  # the row failed: nothing proposed
            message = "; ".join(f"{name}: {text}" if name else text for name, text in errors)
            return False, {"sku": sku or None, "code": code, "message": message}

        def success(listing: Listing, status: str) -> tuple[bool, dict[str, Any]]:
            product = self.model.products[listing.product_id]
            return True, {"sku": listing.sku, "id": listing.id, "listing_id": listing.listing_id,
                          "backmarket_id": product.backmarket_id,
                          "product_id": listing.product_id,
                          "publication_state": self.listings.publication_state(listing,
                                                                               task.locale),
                          "status": status}

        changes: Changes | None = None

        if problem:
            return fail([(None, problem)], "invalid_row")
        if not sku:
            return fail([("sku", "sku is required")])
        rejection = self.listings.rejection(sku, f"Basic {task.token}")
        if rejection:
            return fail([(None, rejection)], "listing_rejected")
        market = existing.markets.get(task.locale) if existing else None
        changes = parse_changes(cells, task.locale, market, self.shared.config)
        product = self.products.resolve_product(cells, changes)
        if existing is None and product is not None and self.shared.faults.reuse_listings:
            existing = self._same_slot(seller, product.product_id, changes.grade)
            if existing is not None:  # the row's values go onto it, against its own market
                changes = replace(parse_changes(cells, task.locale,
                                                existing.markets.get(task.locale),
                                                self.shared.config),
                                  proposed=changes.proposed)
        if existing is not None:
            if product is not None and product.product_id != existing.product_id:
                changes.error(
                    "product_id",
                    f"listing {existing.sku} is for product {existing.product_id}; its product"
                    " cannot be changed",
                )
            if changes.errors:
                return fail(changes.errors)
            apply_changes(existing, task.locale, changes)
            self.shared.touch(task.token, existing)
            return success(existing, "updated")
        product_fields = ("product_id", "backmarket_id", "ean")
        if product is None and not changes.proposal_refused \
                and not any(name in product_fields for name, _ in changes.errors):
            changes.error("product_id", "product_id or ean is required to create a listing")
        if changes.grade is None and "grade" not in cells:
            changes.grade = DEFAULT_GRADE  # as integrators report Back Market does
        if changes.quantity is None and "quantity" not in cells:
            changes.error("quantity", "quantity is required to create a listing")
        if "price" not in cells:
            changes.error("price", f"price is required to create a listing in {task.locale}")
        if changes.errors or product is None or changes.grade is None or changes.quantity is None:
            return fail(changes.errors)
        listing = Listing(
            id=str(uuid.uuid4()),
            listing_id=self.model.next_listing_id,
            sku=sku,
            product_id=product.product_id,
            grade=changes.grade,
            quantity=changes.quantity,
            warranty_delay=changes.market.get("warranty_delay",
                                              max(12, self.shared.config.warranty_min)),
        )
        self.model.next_listing_id += 1
        apply_changes(listing, task.locale, replace(changes, grade=None, quantity=None))
        listing.markets[task.locale].warranty_delay = listing.warranty_delay
        seller.add(listing)
        self.shared.touch(task.token, listing)
        if changes.proposed is not None:
            changes.proposed.proposer = task.token
        return success(listing, "created")

    def _same_slot(self, seller: Seller, product_id: str, grade: str | None) -> Listing | None:
        """The seller's listing of this product and grade, which Back Market reuses."""
        if grade is None:
            return None
        return next((listing for listing in seller.listings.values()
                     if listing.product_id == product_id and listing.grade == grade), None)
