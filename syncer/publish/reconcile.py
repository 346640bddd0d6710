"""Reconciliation: what Back Market shows against what the snapshot says was published.

Pure: the caller reads the live listings (paged) and the catalog. Differences are:

- ``changed``: a listing's quantity (lowered by orders), price, comment... is not what was
  published. The snapshot takes the live values, so the next offer run sends the catalog's
  values again where they differ.
- ``missing``: the snapshot has the offer, Back Market has no listing for it in this country.
  The snapshot forgets it, so the next offer run creates it again if the catalog has it.
- ``adopted``: a listing unknown to the snapshot (made by hand or by another tool) whose SKU is
  in the catalog: the snapshot takes it as it is live, so it is updated, never re-created.
- ``unknown``: a listing unknown to the snapshot and to the catalog: reported, left alone.

A listing whose SKU the snapshot does not know, but whose id it does, is the offer that
holds that id: Back Market reused the listing for a new SKU and kept the old one on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from syncer.core.offers import FIELD_INDEX as F
from syncer.core.offers import Offer, Published, money, sku_key
from syncer.core.snapshot import SnapshotEntry

# Fields a listing shows for one country; the others (ean, deee) are not visible, and the
# product id only matters when the offer was linked by it.
VISIBLE: Final = ("grade", "quantity", "price", "currency", "warranty_delay", "comment",
                  "min_price", "max_price", "shipping")


@dataclass(frozen=True, slots=True)
class Drift:
    kind: str  # changed | missing | adopted | unknown
    sku: str
    field: str | None = None
    snapshot: str | int | None = None
    live: str | int | None = None
    listing_id: str | None = None
    reason: str | None = None  # unknown: why the catalog does not offer it in this store

    def describe(self) -> str:
        if self.kind == "changed":
            return (f"{self.sku}: {self.field} published {self.snapshot!r}, "
                    f"Back Market shows {self.live!r}")
        if self.kind == "missing":
            return f"{self.sku}: in the snapshot, but Back Market has no listing for this country"
        if self.kind == "adopted":
            return f"{self.sku}: live listing {self.listing_id} adopted (it is in the catalog)"
        if self.reason:
            return (f"{self.sku}: live listing {self.listing_id} is in the catalog but not "
                    f"offered in this store ({self.reason}); left alone")
        return f"{self.sku}: live listing {self.listing_id} is not in the catalog; left alone"


@dataclass
class Reconciliation:
    store: str
    locale: str
    checked: int = 0
    drifts: list[Drift] = field(default_factory=list)
    # What the snapshot takes: (sku, observed published fields, listing id).
    observed: list[tuple[str, Published, str | None]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # SKUs the snapshot forgets

    def summary(self) -> dict[str, int]:
        counts = {"checked": self.checked, "changed": 0, "missing": 0, "adopted": 0,
                  "unknown": 0}
        for kind in ("missing", "adopted", "unknown"):
            counts[kind] = sum(1 for d in self.drifts if d.kind == kind)
        counts["changed"] = len({d.sku for d in self.drifts if d.kind == "changed"})
        return counts

    @property
    def has_drift(self) -> bool:
        return any(d.kind != "unknown" for d in self.drifts)

    def to_text(self, limit: int = 200) -> str:
        s = self.summary()
        lines = [f"Store {self.store} ({self.locale}): {s['checked']} listings checked, "
                 f"{s['changed']} drifted, {s['missing']} missing, {s['adopted']} adopted, "
                 f"{s['unknown']} unknown"]
        lines += [f"  {d.kind.upper():<8} {d.describe()}" for d in self.drifts[:limit]]
        if len(self.drifts) > limit:
            lines.append(f"  ... and {len(self.drifts) - limit} more (use --format json)")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "locale": self.locale, "summary": self.summary(),
                "drifts": [{"kind": d.kind, "sku": d.sku, "field": d.field,
                            "snapshot": d.snapshot, "live": d.live,
                            "listing_id": d.listing_id, "reason": d.reason}
                           for d in self.drifts]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


def observed(listing: Mapping[str, Any], locale: str, base: Published, *,
             confirmed: bool = False) -> Published:
    """The published fields as a listing shows them for one country. What a listing does not
    show (EAN, DEEE) and a product id the offer was not linked by are kept from ``base``; so
    is the product id of a ``confirmed`` base: a listing's product never changes, and the one
    it shows may be another of the model family Back Market resolved the sent one to (taking
    it would make the catalog's row look like a change of product, refused every run)."""
    values = list(base)
    values[F["grade"]] = listing.get("grade")
    values[F["quantity"]] = listing.get("quantity")
    values[F["price"]] = _money(listing.get("price"))
    values[F["currency"]] = listing.get("currency")
    values[F["warranty_delay"]] = listing.get("warranty_delay")
    values[F["comment"]] = listing.get("comment") or None
    values[F["min_price"]] = _money(listing.get("min_price"))
    if base[F["max_price"]] is not None:
        values[F["max_price"]] = _money(listing.get("max_price"))
    if base[F["product_id"]] is not None and not confirmed:
        values[F["product_id"]] = listing.get("product_id")
    shipping = ";".join(
        f"{s.get('shipper')}|{_money(s.get('shipping_price'))}|{s.get('shipping_delay')}"
        for s in listing.get("shippings") or [] if s.get("country_code") == locale) or None
    same_set = sorted((shipping or "").split(";")) == \
        sorted(str(base[F["shipping"]] or "").split(";"))
    values[F["shipping"]] = base[F["shipping"]] if same_set else shipping
    return tuple(values)


def reconcile(store: str, locale: str, listings: Iterable[Mapping[str, Any]],
              snapshot: Mapping[str, SnapshotEntry], catalog: Mapping[str, Offer],
              not_offered: Mapping[str, str] | None = None) -> Reconciliation:
    result = Reconciliation(store, locale)
    seen: set[str] = set()
    held: dict[str, str] | None = None  # listing id -> snapshot key, built when needed
    for listing in listings:
        result.checked += 1
        sku = str(listing.get("sku", ""))
        key = sku_key(sku)
        seen.add(key)
        listing_id = None if listing.get("id") is None else str(listing["id"])
        entry = snapshot.get(key)
        if entry is None and listing_id is not None:
            # A listing Back Market reused for another SKU of ours keeps its old SKU: the
            # snapshot knows it by its id.
            if held is None:
                held = {e.listing_id: k for k, e in snapshot.items()
                        if e.listing_id and e.published is not None}
            if (owner := held.get(listing_id)) is not None:
                key, entry = owner, snapshot[owner]
                seen.add(key)
        no_country = _money(listing.get("price")) in (None, "0.00") or \
            listing.get("publication_state") == 0
        if entry is None or entry.published is None:
            offer = catalog.get(key)
            if offer is None:
                result.drifts.append(Drift("unknown", sku, listing_id=listing_id,
                                           reason=(not_offered or {}).get(key)))
            elif not no_country:
                live = observed(listing, locale, offer.published())
                result.observed.append((sku, live, listing_id))
                result.drifts.append(Drift("adopted", sku, listing_id=listing_id))
            continue
        if no_country:
            if entry.published[F["quantity"]]:
                result.missing.append(entry.sku)
                result.drifts.append(Drift("missing", entry.sku, listing_id=listing_id))
            continue
        live = observed(listing, locale, entry.published, confirmed=True)
        if live != entry.published or (listing_id and listing_id != entry.listing_id):
            for name in VISIBLE:
                old, new = entry.published[F[name]], live[F[name]]
                if old != new:
                    result.drifts.append(Drift("changed", entry.sku, name, old, new,
                                               listing_id))
            result.observed.append((entry.sku, live, listing_id))
    for key, entry in snapshot.items():
        if key in seen or entry.published is None or not entry.published[F["quantity"]]:
            continue  # never confirmed, or zeroed: nothing live to miss
        result.missing.append(entry.sku)
        result.drifts.append(Drift("missing", entry.sku, listing_id=entry.listing_id))
    return result


def _money(value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        return money(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return str(value)
