"""Reading a batch's open lines back from the listings: a success to see on its listing
before it is confirmed, a line the task left out (by its SKU, then among the listings the
task tied to no line), a batch whose answer was lost, a late confirmation; and what Back
Market did otherwise than asked (a reused listing, a resolved product), told as a notice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from syncer.backmarket.taskresult import TaskOutcome, TaskReport
from syncer.config.stores import StoreSettings
from syncer.core.offers import FIELD_INDEX as F
from syncer.core.offers import Published, sku_key
from syncer.core.snapshot import Ack, Failure
from syncer.errors import OfferError
from syncer.publish.outcomes import Ledger, PublishResult
from syncer.publish.reconcile import observed


class ReadBack:
    """What the listings of one store show, for the lines a batch task left open."""

    def __init__(self, ledger: Ledger, siblings: Sequence[str]) -> None:
        self.ledger = ledger
        self.store, self.client, self.state, self.log = (ledger.store, ledger.client,
                                                         ledger.state, ledger.log)
        self.siblings = tuple(siblings)
        # (new SKU, old SKU, listing ids) of the listings reused in the batch being settled
        self.reused: list[tuple[str, str, set[str]]] = []

    def check_reported(self, offers: Mapping[str, list[Any]], check: dict[str, TaskOutcome],
                        absent: list[str], result: PublishResult) -> list[Ack]:
        """Successes to see on their listing before confirming: the listing the task names
        must carry what was sent (its product may be one Back Market resolved it to). What
        does not is added to ``absent``, read by its SKU like a line the task left out."""
        acks = []
        by_sku = [key for key, outcome in check.items() if not outcome.listing_id]
        listings = self.client.find_listings([offers[key][0] for key in by_sku]) \
            if by_sku else {}
        for key, outcome in check.items():
            sku, source_hash, *target = offers[key]
            published = tuple(target)
            listing = listings.get(key) if not outcome.listing_id else \
                self.listing_by_id(outcome.listing_id)
            if not outcome.weak:
                # Back Market said this very SKU succeeded, without its listing id: confirmed,
                # the listing only tells its id.
                acks.append(Ack(sku, published, None if listing is None else str(listing["id"]),
                                source_hash))
                continue
            if listing is None or _answers_another(listing, key, offers) or not listing_matches(
                    listing, published, self.store, products=(outcome.product_id,)):
                absent.append(key)
                continue
            acks.append(Ack(sku, published, str(listing["id"]), source_hash))
            self.note_reuse(result, sku, listing)
            self.note_product(result, sku, published, listing.get("product_id"))
        return acks

    def find_open(self, offers: Mapping[str, list[Any]], absent: Sequence[str],
                   report: TaskReport, result: PublishResult) -> tuple[list[Ack], list[str]]:
        """Lines the result leaves open, read from the listings: by their SKU, then among
        the listings of successes the task tied to no line (Back Market may have put a new
        SKU on an existing listing of the same product and grade). Returns the
        confirmations and the lines not found as sent."""
        if not absent:
            return [], []
        listings = self.client.find_listings([offers[key][0] for key in absent])
        acks, left = [], []
        for key in absent:
            sku, source_hash, *target = offers[key]
            listing = listings.get(key)
            if listing is not None and listing_matches(listing, tuple(target), self.store):
                acks.append(Ack(sku, tuple(target), str(listing["id"]), source_hash))
            else:
                left.append(key)
        ids = dict.fromkeys(o.listing_id for o in report.untied if o.ok and o.listing_id)
        others = [self.listing_by_id(listing_id) for listing_id in ids if listing_id] \
            if left else []
        candidates = list({str(listing["id"]): listing for listing in others
                           if listing is not None
                           and not _answers_another(listing, "", offers)}.values())
        matches = {key: [listing for listing in candidates
                         if listing_matches(listing, tuple(offers[key][2:]), self.store)]
                   for key in left} if candidates else {}
        missing = []
        for key in left:
            sku, source_hash, *target = offers[key]
            found = matches.get(key, [])
            # Only a listing no other open line matches, and the only one this line matches.
            if len(found) == 1 and sum(found[0] in m for m in matches.values()) == 1:
                acks.append(Ack(sku, tuple(target), str(found[0]["id"]), source_hash))
                self.note_reuse(result, sku, found[0])
            else:
                missing.append(key)
        return acks, missing

    def retire(self, reused: Sequence[tuple[str, str, set[str]]], offers: Mapping[str, Any],
                confirmed: set[str]) -> None:
        """A listing Back Market reused now serves the new SKU: the old SKU's snapshot
        entries that point at it (in this store and the stores sharing its quantity) are
        forgotten, or a zero of the old SKU would take the new offer offline."""
        for sku, shown, ids in reused:
            key = sku_key(shown)
            if key in offers or sku_key(sku) not in confirmed:
                continue  # the old SKU is answered in this batch, or the new one not taken
            for store in (self.store.name, *self.siblings):
                entry = self.state.offers.snapshot_entries(store, [key]).get(key)
                if entry is not None and entry.listing_id in ids:
                    self.state.offers.forget(store, [shown])
                    self.log.info("old SKU of a reused listing forgotten", store=store,
                                  sku=shown, listing_id=entry.listing_id)

    def listing_by_id(self, listing_id: str) -> dict[str, Any] | None:
        try:
            return self.client.get_listing(listing_id)
        except OfferError as exc:
            if exc.status in (400, 404):
                return None
            raise

    def note_reuse(self, result: PublishResult, sku: str, listing: Mapping[str, Any]) -> None:
        shown = str(listing.get("sku") or "")
        if sku_key(shown) == sku_key(sku):
            return
        number = listing.get("listing_id") or listing.get("id")
        self.reused.append((sku, shown, {str(listing.get(name)) for name in ("id", "listing_id")
                                          if listing.get(name) is not None}))
        note = f"Back Market reused listing {number} (SKU {shown}) for {sku}"
        result.notices.append(note)
        result.counts["reused"] += 1
        self.log.warning("Back Market reused a listing", sku=sku, listing_sku=shown,
                         listing_id=number, notice=note)

    def note_product(self, result: PublishResult, sku: str, target: Published,
                      product: Any) -> None:
        sent = target[F["product_id"]]
        if sent is None or product is None or str(product) == sent:
            return
        note = f"Back Market resolved product {sent} to {product} for {sku}"
        result.notices.append(note)
        result.counts["resolved"] += 1
        self.log.warning("Back Market resolved a product", sku=sku, sent=sent,
                         product_id=str(product), notice=note)

    def read_back(self, stale: Sequence[Ack], task_id: int) -> list[Failure]:
        """Offers a batch confirmed after a newer confirmation of their listing (another
        store's real-time update while the task waited): Back Market applied the two in an
        order nobody knows, so what its listings show now becomes the snapshot. Returns the
        offers it no longer shows (sent again next run)."""
        listings = self.client.find_listings([ack.sku for ack in stale])
        seen, missing = [], []
        for ack in stale:
            listing = listings.get(sku_key(ack.sku))
            if listing is None and ack.listing_id:  # a listing Back Market reused
                listing = self.listing_by_id(ack.listing_id)
            if listing is None:
                missing.append(Failure(ack.sku, f"confirmed by batch task {task_id} after a "
                                       "newer update, then not found", attempted=ack.published,
                                       refused=False))
            else:
                seen.append(Ack(ack.sku, observed(listing, self.store.locale, ack.published,
                                                  confirmed=True),
                                str(listing["id"]), None))
        self.state.offers.record_observed(self.store.name, seen)
        self.log.info("late batch confirmations read back from the listings", task_id=task_id,
                      offers=len(stale), not_found=len(missing))
        return missing

    def settle_unknown(self, batches: Sequence[tuple[int, dict[str, list[Any]]]],
                        result: PublishResult) -> None:
        """Batches whose POST got no answer: what the listings show decides, offer by offer
        (all of them looked up together). Offers not found as sent are dropped from their
        batch; the plan sends them again."""
        listings = self.client.find_listings(
            [sku for _, offers in batches for sku, _, *_ in offers.values()])
        for batch_id, offers in batches:
            acks = []
            for key, (sku, source_hash, *target) in offers.items():
                listing = listings.get(key)
                published = tuple(target)
                if listing is not None and listing_matches(listing, published, self.store):
                    acks.append(Ack(sku, published, str(listing["id"]), source_hash))
            self.state.offers.record_acks(self.store.name, acks)
            self.state.batches.remove(batch_id)
            for ack in acks:
                self.ledger.tell(ack.sku, None, "confirmed", ack.listing_id,
                                 message="an earlier run's batch, found on the listings")
            result.counts["created"] += len(acks)
            self.log.info("unknown batch checked on the listings", found=len(acks),
                          not_found=len(offers) - len(acks))


def _answers_another(listing: Mapping[str, Any], key: str, offers: Mapping[str, Any]) -> bool:
    """The listing shows the SKU of another line of the batch: it answers that line (two
    lines alike, a row counted differently), whatever the values it shares with this one."""
    shown = sku_key(str(listing.get("sku") or ""))
    return shown != key and shown in offers


def listing_matches(listing: Mapping[str, Any], target: Published, store: StoreSettings, *,
                    products: Sequence[Any] = ()) -> bool:
    """Does a listing, as Back Market shows it for the store's country, carry the target?
    Its product is the one sent, or one of ``products``: what Back Market reported it
    resolved the sent one to, for this very line."""
    checks: list[tuple[Any, Any]] = [
        (listing.get("quantity"), target[F["quantity"]]),
        (listing.get("grade"), target[F["grade"]]),
        (_amount(listing.get("price")), _amount(target[F["price"]])),
        (listing.get("currency"), target[F["currency"]]),
        (listing.get("warranty_delay"), target[F["warranty_delay"]]),
        (listing.get("comment") or None, target[F["comment"]]),
        (_amount(listing.get("min_price")), _amount(target[F["min_price"]])),
    ]
    if target[F["product_id"]] is not None:
        allowed = {target[F["product_id"]], *(str(p) for p in products if p is not None)}
        checks.append((str(listing.get("product_id")) in allowed, True))
    if target[F["max_price"]] is not None:
        checks.append((_amount(listing.get("max_price")), _amount(target[F["max_price"]])))
    return all(a == b for a, b in checks)


def _amount(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None
