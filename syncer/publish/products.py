"""Products: propose to Back Market the products it does not know yet, with their offers.

Only rows with product content (mapping profile, ``[product]``) are considered: a row
without it is an offer on a product Back Market is meant to know. A product is known when the
catalog links the row by ``product_id``, when the store already has a confirmed offer for the
SKU, or when an earlier proposal of the EAN was validated. Otherwise the content is validated
(EAN with a valid check digit, mandatory fields, a leaf category and its mandatory attributes
when the category tree is known) and proposed through the batch endpoint with the offer.

Each proposal is tracked per store and EAN: ``proposed`` (waiting for Back Market's review),
``live`` (validated: never sent again, Back Market would ignore it), ``rejected`` (with Back
Market's reason: not sent again until its content changes). A pending proposal whose content
changed is sent again (Back Market lets its proposer update it until validation).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from syncer.backmarket.taskresult import TaskOutcome, TaskReport
from syncer.catalog.files import CatalogSource
from syncer.config.settings import Settings
from syncer.config.stores import StoreSettings
from syncer.core.offers import Offer, Rejection
from syncer.planning.cells import BadValue, parse_amount, parse_count
from syncer.planning.changes import Change, changes_between
from syncer.planning.mapping import StoreMapping, compile_mapping, load_profile
from syncer.planning.validation import Validator
from syncer.state.store import StateStore

if TYPE_CHECKING:  # the pipeline hands both in: the plan's start-up loads no HTTP client
    from syncer.backmarket.client import BackMarketClient
    from syncer.publish.publisher import Publisher

REQUIRED: Final = ("title", "description", "brand", "price_new", "weight", "category_id",
                   "image1")
SUMMARY_KEYS: Final = ("propose", "update", "waiting", "rejected", "known", "invalid")


@dataclass(frozen=True)
class ProductContent:
    """What a proposal sends about the product (its country's title and description)."""

    store: str
    row: int
    sku: str
    ean: str
    fields: dict[str, str]

    def content_hash(self) -> str:
        text = json.dumps(self.fields, sort_keys=True, ensure_ascii=False)
        return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


@dataclass(frozen=True)
class ProductChange:
    action: str  # "propose" | "update"
    content: ProductContent
    offer: Offer
    reason: str


@dataclass(frozen=True)
class ProductNotice:
    kind: str  # "waiting" | "rejected" | "known"
    store: str
    sku: str
    ean: str | None
    message: str


@dataclass
class StoreProducts:
    store: str
    locale: str
    changes: list[ProductChange] = field(default_factory=list)
    notices: list[ProductNotice] = field(default_factory=list)
    invalid: int = 0

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(SUMMARY_KEYS, 0)
        for change in self.changes:
            counts[change.action] += 1
        for notice in self.notices:
            counts[notice.kind] += 1
        counts["invalid"] = self.invalid
        return counts


@dataclass
class ProductPlan:
    stores: list[StoreProducts]
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return any(s.changes for s in self.stores)

    def summary(self) -> dict[str, int]:
        totals = dict.fromkeys(SUMMARY_KEYS, 0)
        for store in self.stores:
            for key, value in store.summary().items():
                totals[key] += value
        return totals

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "products",
            "summary": self.summary(),
            "stores": [{"store": s.store, "locale": s.locale, "summary": s.summary()}
                       for s in self.stores],
            "changes": [{"store": c.content.store, "action": c.action, "sku": c.content.sku,
                         "ean": c.content.ean, "row": c.content.row, "reason": c.reason,
                         "content": c.content.fields}
                        for s in self.stores for c in s.changes],
            "notices": [{"store": n.store, "kind": n.kind, "sku": n.sku, "ean": n.ean,
                         "message": n.message} for s in self.stores for n in s.notices],
            "rejections": [r.to_dict() for r in self.rejections],
        }

    def render(self, fmt: str, limit: int = 200) -> str:
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        lines: list[str] = []
        markdown = fmt == "markdown"
        if markdown:
            lines += ["## Back Market product proposals", "",
                      "| store | " + " | ".join(SUMMARY_KEYS) + " |",
                      "| --- |" + " ---: |" * len(SUMMARY_KEYS)]
            lines += [f"| {s.store} ({s.locale}) | "
                      + " | ".join(str(s.summary()[k]) for k in SUMMARY_KEYS) + " |"
                      for s in self.stores]
            lines.append("")
        for store in self.stores:
            s = store.summary()
            lines.append(f"Store {store.store} ({store.locale}): " + ", ".join(
                f"{s[k]} {k}" for k in SUMMARY_KEYS))
            for change in store.changes[:limit]:
                lines.append(f"  {change.action.upper():<8} {change.content.sku} (EAN "
                             f"{change.content.ean}): {change.reason}")
            for notice in store.notices[:limit]:
                if notice.kind != "known":
                    lines.append(f"  {notice.kind.upper():<8} {notice.sku} (EAN "
                                 f"{notice.ean}): {notice.message}")
        if self.rejections:
            lines.append(f"Product content rejected ({len(self.rejections)} problems):")
            lines += [f"  {r.message()}" for r in self.rejections[:limit]]
        if not self.has_changes:
            lines.append("Nothing to propose.")
        prefix = "- " if markdown else ""
        return "\n".join(
            prefix + line if markdown and line.startswith("  ") else line for line in lines
        ) + "\n"


def leaf_categories(tree: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    leaves: dict[int, Mapping[str, Any]] = {}
    for node in tree:
        if node.get("is_leaf"):
            leaves[int(node["marketplace_category_id"])] = node
        leaves.update(leaf_categories(node.get("childrens") or []))
    return leaves


def product_content(mapping: StoreMapping, offer: Offer, values: Sequence[str],
                    leaves: Mapping[int, Mapping[str, Any]] | None
                    ) -> tuple[ProductContent | None, list[Rejection]]:
    """The row's product content for the store, or the rejections that stop a proposal."""
    problems: list[Rejection] = []

    def reject(name: str, value: str | None, expected: str) -> None:
        problems.append(Rejection(offer.row, offer.sku, f"product {name}", value, expected,
                                  offer.store))

    if offer.ean is None:
        reject("ean", None, "an EAN with a valid check digit (mandatory to propose a product)")
        return None, problems
    fields: dict[str, str] = {}
    for name, getter in mapping.product.items():
        value = getter(values)
        if value is not None:
            fields[name] = value
    for name in REQUIRED:
        if name not in fields:
            reject(name, None, f"a {name.replace('_', ' ')} (mandatory to propose a product)")
    if len(fields.get("title", "")) > 200:
        reject("title", fields["title"], "at most 200 characters")
    if len(fields.get("brand", "")) > 100:
        reject("brand", fields["brand"], "at most 100 characters")
    if "price_new" in fields:
        try:
            fields["price_new"] = f"{parse_amount(fields['price_new']):.2f}"
        except BadValue as exc:
            reject("price_new", fields["price_new"], exc.expected)
    if "weight" in fields:
        try:
            weight = parse_count(fields["weight"])
            if weight < 2:
                raise BadValue("a weight in grams, more than 1")
            fields["weight"] = str(weight)
        except BadValue as exc:
            reject("weight", fields["weight"], exc.expected.replace("whole number",
                                                                    "weight in grams"))
    for number in range(1, 7):
        image = fields.get(f"image{number}")
        if image is not None and not re.match(r"https?://\S+$", image):
            reject(f"image{number}", image, "an http(s) URL of the image")
    category = None
    if "category_id" in fields:
        try:
            category = int(fields["category_id"])
        except ValueError:
            reject("category_id", fields["category_id"], "a Back Market category id")
    attributes = {name: v for name, getter in mapping.attributes.items()
                  if (v := getter(values)) is not None}
    if category is not None and leaves is not None:
        leaf = leaves.get(category)
        if leaf is None:
            reject("category_id", fields["category_id"],
                   "a leaf category's marketplace_category_id (see GET /ws/category/tree)")
        else:
            for attribute in leaf.get("attributes", []):
                name = str(attribute["field"])
                value = attributes.get(name)
                allowed = [v.strip() for v in str(attribute.get("allowed_values") or "")
                           .split(",") if v.strip()]
                if attribute.get("required") and value is None:
                    reject(name, None, f"{attribute.get('field_name', name)}: mandatory in "
                                       f"{leaf.get('category_name')}")
                elif value is not None and allowed and value not in allowed:
                    reject(name, value, "one of " + ", ".join(allowed))
    if problems:
        return None, problems
    return ProductContent(offer.store, offer.row, offer.sku, offer.ean,
                          {**fields, **attributes}), []


def plan_products(settings: Settings, stores: Sequence[StoreSettings], catalog: CatalogSource,
                  state: StateStore) -> ProductPlan:
    """What would be proposed per store, and why. Reads the catalog and the state only."""
    profile = load_profile(settings.mapping_path())
    plans = {s.name: StoreProducts(s.name, s.locale) for s in stores}
    snapshots = {s.name: state.offers.snapshot(s.name) for s in stores}
    proposals = {s.name: state.products.proposals(s.name) for s in stores}
    trees = {s.name: state.products.category_tree(s.account) for s in stores}
    leaves = {name: None if tree is None else leaf_categories(tree)
              for name, tree in trees.items()}
    rejections: list[Rejection] = []
    proposed_eans: dict[str, set[str]] = {s.name: set() for s in stores}
    with catalog.open() as stream:
        mapping = compile_mapping(profile, stream.header, list(settings.stores))
        by_store = {m.store.name: m for m in mapping.stores}
        validator = Validator(mapping)
        for row, values in stream.rows:
            for offer in validator.validate(row, values).offers:
                plan = plans.get(offer.store)
                if plan is None:
                    continue
                _plan_offer(plan, offer, values, by_store[offer.store],
                            snapshots[offer.store], proposals[offer.store],
                            leaves[offer.store], rejections, proposed_eans[offer.store])
    return ProductPlan([plans[s.name] for s in stores], rejections)


def _plan_offer(plan: StoreProducts, offer: Offer, values: Sequence[str],
                mapping: StoreMapping, snapshot: Mapping[str, Any],
                proposals: Mapping[str, dict[str, Any]],
                leaves: Mapping[int, Mapping[str, Any]] | None, rejections: list[Rejection],
                seen: set[str]) -> None:
    entry = snapshot.get(offer.sku_key)
    if offer.product_id is not None or (entry is not None and entry.published is not None
                                        and offer.ean not in proposals):
        plan.notices.append(ProductNotice("known", plan.store, offer.sku, offer.ean,
                                          "Back Market knows the product"))
        return
    if not any(getter(values) is not None for getter in mapping.product.values()):
        return  # no product content: an offer on a product Back Market is meant to know
    record = proposals.get(offer.ean or "")
    if record is not None and record["status"] == "live":
        plan.notices.append(ProductNotice("known", plan.store, offer.sku, offer.ean,
                                          "validated by Back Market: never sent again"))
        return
    if offer.ean in seen:
        return  # one proposal per EAN: several SKUs (grades) of one product share it
    content, problems = product_content(mapping, offer, values, leaves)
    if content is None:
        plan.invalid += 1
        rejections.extend(problems)
        return
    seen.add(content.ean)
    digest = content.content_hash()
    if record is None:
        plan.changes.append(ProductChange("propose", content, offer,
                                          "new EAN, unknown to Back Market"))
    elif record["content_hash"] == digest:
        if record["status"] == "rejected":
            plan.notices.append(ProductNotice(
                "rejected", plan.store, offer.sku, offer.ean,
                f"{record['reason']}; not sent again until its content changes"))
        else:
            plan.notices.append(ProductNotice(
                "waiting", plan.store, offer.sku, offer.ean,
                "proposed, waiting for Back Market's review"))
    elif record["status"] == "rejected":
        plan.changes.append(ProductChange("propose", content, offer,
                                          "content changed since Back Market rejected it "
                                          f"({record['reason']})"))
    else:
        plan.changes.append(ProductChange("update", content, offer,
                                          "content changed while waiting for review"))


def held_eans(state: StateStore, store: str) -> dict[str, str]:
    """EANs whose offers must wait: their product proposal was rejected. EAN -> reason."""
    return {ean: f"its product was rejected: {record['reason']}"
            for ean, record in state.products.proposals(store).items()
            if record["status"] == "rejected"}


# The pipeline's publisher for the store (its budget, lease, progress and stop signal), given
# the proposals' product columns by SKU key and a hook told of every finished task.
PublisherFor = Callable[
    [Mapping[str, Mapping[str, str]], Callable[[dict[str, Any], TaskReport], None]],
    "Publisher"]


def publish_products(settings: Settings, state: StateStore, store: StoreSettings,
                     catalog: CatalogSource, client: BackMarketClient,
                     publisher_for: PublisherFor) -> dict[str, int]:
    """One store's products through ``client``: refresh the category tree, look at pending
    proposals, then propose what the plan says, with the offers. The caller records the run
    (syncer.pipeline.jobs.products_store)."""
    counts = {"proposed": 0, "updated": 0, "rejected": 0, "validated": 0, "waiting": 0}
    state.products.save_category_tree(store.account, client.category_tree())
    counts["validated"] = _review_pending(state, store, client)
    plan = plan_products(settings, [store], catalog, state).stores[0]
    counts["waiting"] = sum(1 for n in plan.notices if n.kind == "waiting")
    if plan.changes:
        extra = {c.offer.sku_key: c.content.fields for c in plan.changes}
        by_key = {c.offer.sku_key: c for c in plan.changes}
        snapshot = state.offers.snapshot(store.name)
        changes = []
        for c in plan.changes:
            entry = snapshot.get(c.offer.sku_key)
            before = None if entry is None else entry.published
            changes.append(Change(
                "create" if before is None else "update", store.name, c.offer.sku,
                c.offer.published(), changes_between(before, c.offer.published()),
                row=c.offer.row))
        outcomes: list[TaskReport] = []
        publisher = publisher_for(extra, lambda _task, report: outcomes.append(report))
        result = publisher.publish_batch(changes)
        _record_outcomes(state, store, by_key, outcomes, counts)
        counts["failed_offers"] = result.counts["failed"]
    return counts


def _review_pending(state: StateStore, store: StoreSettings, client: BackMarketClient) -> int:
    """Proposals waiting for review: a listing that left "pending validation" means the
    product was validated."""
    validated = []
    for ean, record in state.products.proposals(store.name).items():
        if record["status"] != "proposed":
            continue
        listing = client.find_listing(record["sku"])
        if listing is not None and listing.get("publication_state") in (2, 3):
            validated.append({**record, "ean": ean, "status": "live",
                              "product_id": listing.get("product_id")})
    for item in validated:
        item.pop("store", None)
        item.pop("updated_at", None)
    state.products.record_proposals(store.name, validated)
    return len(validated)


def _record_outcomes(state: StateStore, store: StoreSettings,
                     by_key: Mapping[str, ProductChange], reports: Sequence[TaskReport],
                     counts: dict[str, int]) -> None:
    """What the batch tasks said of each proposal, recorded once: refused (with Back
    Market's text, not proposed again until its content changes), or accepted (live, or
    waiting for review while its listing is pending validation). A proposal the tasks
    said nothing certain about stays as it was: the next run looks again."""
    records = []
    for report in reports:
        for key, outcome in report.outcomes.items():
            change = by_key.get(key)
            if change is None or (outcome.ok and outcome.weak):
                continue
            base: dict[str, Any] = {"ean": change.content.ean, "sku": change.content.sku,
                                    "content_hash": change.content.content_hash()}
            if not outcome.ok:
                records.append({**base, "status": "rejected",
                                "reason": outcome.message or "rejected"})
                counts["rejected"] += 1
                continue
            records.append({**base, "status": "live" if _validated(outcome) else "proposed",
                            "product_id": outcome.product_id})
            counts["updated" if change.action == "update" else "proposed"] += 1
    state.products.record_proposals(store.name, records)


def _validated(outcome: TaskOutcome) -> bool:
    """Back Market validated the product: its listing is no longer pending validation
    (publication_state 1). The first guess of a result told it in ``product.status``."""
    product = outcome.fields.get("product")
    if isinstance(product, dict) and product.get("status") is not None:
        return product.get("status") == "validated"
    state = outcome.fields.get("publication_state")
    return isinstance(state, int) and state != 1 and not isinstance(state, bool)
