"""The emulator's competitive market: the BackBox of each product and grade, per market.

A part of an ``Emulator``: ``GET /ws/backbox/v1/competitors/{listingId}``
answers, for one of the seller's listings, one ``Competitor`` per market where the listing has
a price (the spec's shape: ``listing_id``, ``product_id``, ``market``, ``price``, ``min_price``,
``price_to_win``, ``winner_price``, ``is_winning``), at most 2 calls a second per token
(beyond: 429, as the spec says "twice per second per API token"; the general per-token limit
applies too, before it).

The model (what Back Market says of the BackBox: the best quality-per-price wins):
- Competing for the BackBox of (product, grade, market) are the other sellers ("rivals", set
  with the admin endpoint or seeded) and the listings of the same product and grade of the
  emulator's other tokens, each with a price and a quality score (default 1); a listing
  competes when it has stock and a price in that market.
- The best rival is the one with the highest quality / price (the lower price on a tie).
- Our listing wins when its quality / price is strictly higher than the best rival's (a tie
  leaves the BackBox to the rival).
- ``price_to_win``: the highest price, to the cent, at which our listing would beat the best
  rival: ``our_quality * rival_price / rival_quality`` rounded down to the cent, one cent less
  when that is exact; at least 0.01. With no rival it is our own price.
- ``winner_price``: ours when we win, else the best rival's; null when nobody competes.
- ``is_winning``: we win and our listing competes (stock and a price).

Admin endpoints (not Back Market's):
- ``POST /_emulator/market`` ``{product_id, grade, market}`` (or ``{token, sku}`` for our
  listing's product and grade; ``market`` a code "FR" or a locale "fr-fr") with ``seller``
  (default "rival"), ``price`` or ``undercut`` (an amount below our listing's price there),
  ``quality`` (default 1), or ``remove: true``: sets one rival; answers the rivals there.
- ``GET /_emulator/market``: every rival; ``POST /_emulator/market/quality``
  ``{token, quality}``: our quality score; ``POST /_emulator/market/seed`` ``{seed}``: rivals
  made up, deterministically from the seed, for every (product, grade, market) not set by
  hand (0 to 3 rivals priced within -8%..+12% of our price, quality 0.85..1).
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Final

from syncer.emulator.changes import CENT
from syncer.emulator.http import Call, HttpError, Reply, Router, error_v1, take_slot
from syncer.emulator.listings import Listings
from syncer.emulator.model import Shared

__all__ = ["MARKET_CODES", "MarketBook", "Rival", "backbox", "market_of"]

# The spec's MarketCode enum: a market Back Market has a BackBox for.
MARKET_CODES: Final = ("FR", "BE", "DE", "IT", "ES", "GB", "AT", "NL", "US", "FI", "PT", "IE",
                       "GR", "SK", "SE", "JP")
CALLS_PER_SECOND: Final = 2
MAX_PRICE: Final = Decimal("1000000")


def market_of(locale: str) -> str:
    return locale.split("-")[1].upper()


@dataclass
class Rival:
    seller: str
    price: Decimal
    quality: Decimal = Decimal(1)

    def to_json(self) -> dict[str, Any]:
        return {"seller": self.seller, "price": f"{self.price:.2f}",
                "quality": str(self.quality)}


def backbox(price: Decimal | None, quality: Decimal, competes: bool,
            rivals: list[Rival]) -> tuple[Decimal, Decimal | None, bool]:
    """(price_to_win, winner_price, is_winning) of our listing against ``rivals``."""
    ours = price if price is not None else Decimal(0)
    live = [r for r in rivals if r.price > 0 and r.quality > 0]
    if not live:
        return ours, (ours if competes else None), competes
    best = max(live, key=lambda r: (r.quality / r.price, -r.price))
    bound = quality * best.price / best.quality
    to_win = bound.quantize(CENT, rounding=ROUND_FLOOR)
    if to_win == bound:
        to_win -= CENT
    to_win = max(to_win, CENT)
    winning = competes and ours > 0 and ours <= to_win
    return to_win, (ours if winning else best.price), winning


class MarketBook:
    """The rivals of every BackBox of one emulator, our quality scores, the 2/s limit."""

    def __init__(self, shared: Shared, listings: Listings) -> None:
        self.shared = shared
        self.listings = listings
        self.clear()

    def install(self, router: Router) -> None:
        router.add("GET", r"/ws/backbox/v1/competitors/(?P<listing>[^/]+)",
                   self.get_competitors)
        router.add("GET", r"/_emulator/market", self.admin_list, admin=True)
        router.add("POST", r"/_emulator/market", self.admin_set, admin=True)
        router.add("POST", r"/_emulator/market/quality", self.admin_quality, admin=True)
        router.add("POST", r"/_emulator/market/seed", self.admin_seed, admin=True)

    def clear(self) -> None:
        self.rivals: dict[tuple[str, str, str], dict[str, Rival]] = {}
        self.quality: dict[str, Decimal] = {}
        self.seed: int | None = None
        self._seeded: set[tuple[str, str, str]] = set()
        self._calls: dict[str, deque[float]] = {}
        self.rate_limited = 0  # competitors calls refused by the 2/s limit

    # -- in-process helpers --
    def set_rival(self, product_id: str, grade: str, market: str, price: Decimal | str, *,
                  seller: str = "rival", quality: Decimal | str = "1") -> None:
        with self.shared.lock:
            key = (product_id, grade.upper(), market.upper())
            self.rivals.setdefault(key, {})[seller] = Rival(seller, Decimal(price),
                                                            Decimal(quality))

    def remove_rival(self, product_id: str, grade: str, market: str, seller: str) -> None:
        with self.shared.lock:
            self.rivals.get((product_id, grade.upper(), market.upper()), {}).pop(seller, None)

    def ours(self, token: str, listing_id: str) -> dict[str, Any] | None:
        for listing in self.listings.dumps(token):
            if listing["id"] == listing_id:
                return listing
        return None

    def entries(self, token: str, listing: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The competitors answer for one of the seller's listings."""
        quality = self.quality.get(token, Decimal(1))
        answer = []
        for locale, data in listing["markets"].items():
            market = market_of(locale)
            if data.get("price") is None or market not in MARKET_CODES:
                continue
            price = Decimal(data["price"])
            currency = data.get("currency") or self.emulator_currency(locale)
            rivals = self._rivals(token, listing, locale, market, price)
            competes = listing["quantity"] > 0 and price > 0
            to_win, winner, winning = backbox(price, quality, competes, rivals)
            answer.append({
                "listing_id": listing["id"], "product_id": listing["product_id"],
                "market": market,
                "price": _amount(price, currency),
                "min_price": None if data.get("min_price") is None
                else _amount(Decimal(data["min_price"]), currency),
                "price_to_win": _amount(to_win, currency),
                "winner_price": None if winner is None else _amount(winner, currency),
                "is_winning": winning,
            })
        return answer

    def emulator_currency(self, locale: str) -> str:
        return self.shared.markets[locale]

    def _rivals(self, token: str, listing: Mapping[str, Any], locale: str, market: str,
                price: Decimal) -> list[Rival]:
        key = (listing["product_id"], listing["grade"], market)
        if self.seed is not None and key not in self.rivals and key not in self._seeded:
            self._seeded.add(key)
            self.rivals[key] = _seeded(self.seed, key, price)
        rivals = list(self.rivals.get(key, {}).values())
        for other in self.shared.config.tokens:  # the emulator's other sellers
            if other == token:
                continue
            for theirs in self.listings.dumps(other):
                data = theirs["markets"].get(locale) or {}
                if theirs["product_id"] == listing["product_id"] and \
                        theirs["grade"] == listing["grade"] and theirs["quantity"] > 0 and \
                        data.get("price") is not None:
                    rivals.append(Rival(f"seller:{theirs['sku']}", Decimal(data["price"]),
                                        self.quality.get(other, Decimal(1))))
        return rivals

    # -- Back Market's route --
    def get_competitors(self, call: Call) -> Reply:
        now = self.shared.config.clock()
        calls = self._calls.setdefault(call.token, deque())
        if not take_slot(calls, now, 1.0, CALLS_PER_SECOND):
            self.rate_limited += 1
            return error_v1(429, "too_many_requests",
                            f"Too many requests: more than {CALLS_PER_SECOND} a second on the "
                            "competitors endpoint")
        ident = call.params["listing"]
        try:
            listing_id = str(uuid.UUID(ident))
        except ValueError:
            return Reply(422, {"detail": [{"loc": ["path", "listingId"],
                                           "msg": "value is not a valid uuid",
                                           "type": "type_error.uuid"}]})
        listing = self.ours(call.token, listing_id)
        if listing is None:
            return Reply(404, {"detail": "Not Found"})
        return Reply(200, self.entries(call.token, listing))

    # -- admin routes --
    def admin_list(self, call: Call) -> Reply:
        return Reply(200, [{"product_id": p, "grade": g, "market": m,
                            "rivals": [r.to_json() for r in rivals.values()]}
                           for (p, g, m), rivals in sorted(self.rivals.items())])

    def admin_set(self, call: Call) -> Reply:
        body = call.json_object()
        market = body.get("market")
        if not isinstance(market, str) or not market:
            raise call.bad_request("market (a code such as FR, or a locale) is required")
        locale = market.lower() if "-" in market else None
        market = market_of(market) if "-" in market else market.upper()
        if market not in MARKET_CODES:
            raise call.bad_request(f"{market!r} is not a market code")
        ours = None
        if "sku" in body:
            token = self._token(body)
            found = [item for item in self.listings.dumps(token)
                     if str(item["sku"]).casefold() == str(body["sku"]).casefold()]
            if not found:
                raise HttpError(error_v1(404, "not_found", f"no listing {body['sku']!r}"))
            ours = found[0]
            product_id, grade = ours["product_id"], ours["grade"]
        else:
            product_id, grade = body.get("product_id"), body.get("grade")
            if not isinstance(product_id, str) or not isinstance(grade, str):
                raise call.bad_request("give {product_id, grade} or {token, sku}")
        seller = body.get("seller", "rival")
        if not isinstance(seller, str) or not seller:
            raise call.bad_request("seller must be a non-empty string")
        if body.get("remove") is True:
            self.remove_rival(product_id, grade, market, seller)
        else:
            price = self._price(call, body, ours, locale, market)
            quality = _decimal(call, body.get("quality", "1"), "quality")
            if quality <= 0:
                raise call.bad_request("quality must be above 0")
            self.set_rival(product_id, grade, market, price, seller=seller, quality=quality)
        key = (product_id, grade.upper(), market)
        return Reply(200, {"product_id": product_id, "grade": grade.upper(), "market": market,
                           "rivals": [r.to_json() for r in self.rivals.get(key, {}).values()]})

    def _price(self, call: Call, body: Mapping[str, Any], ours: Mapping[str, Any] | None,
               locale: str | None, market: str) -> Decimal:
        if "undercut" in body:
            if ours is None:
                raise call.bad_request("undercut needs {token, sku}: whose price to undercut")
            prices = [Decimal(data["price"]) for loc, data in ours["markets"].items()
                      if data.get("price") is not None
                      and (loc == locale if locale else market_of(loc) == market)]
            if not prices:
                raise call.bad_request(f"the listing has no price in {market}")
            price = prices[0] - _decimal(call, body["undercut"], "undercut")
        else:
            price = _decimal(call, body.get("price"), "price")
        if not Decimal(0) < price < MAX_PRICE:
            raise call.bad_request("a rival's price is above 0 and below 1000000")
        return price.quantize(CENT)

    def admin_quality(self, call: Call) -> Reply:
        body = call.json_object()
        token = self._token(body)
        quality = _decimal(call, body.get("quality"), "quality")
        if quality <= 0:
            raise call.bad_request("quality must be above 0")
        self.quality[token] = quality
        return Reply(200, {"quality": str(quality)})

    def _token(self, body: Mapping[str, Any]) -> str:
        """The seller an admin request names (the first one by default), else a 404."""
        tokens = self.shared.config.tokens
        token = body.get("token") or tokens[0]
        if token not in tokens:
            raise HttpError(error_v1(404, "not_found", "unknown token"))
        return str(token)

    def admin_seed(self, call: Call) -> Reply:
        seed = call.json_object().get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise call.bad_request("seed must be an integer or null")
        self.seed = seed
        self._seeded.clear()
        return Reply(200, {"seed": seed})


def _seeded(seed: int, key: tuple[str, str, str], price: Decimal) -> dict[str, Rival]:
    rng = random.Random(f"{seed}|{'|'.join(key)}")
    rivals = {}
    for number in range(rng.randint(0, 3)):
        share = Decimal(str(round(rng.uniform(0.92, 1.12), 4)))
        quality = Decimal(str(round(rng.uniform(0.85, 1.0), 2)))
        rival_price = max(CENT, (price * share).quantize(CENT))
        rivals[f"seeded-{number + 1}"] = Rival(f"seeded-{number + 1}", rival_price, quality)
    return rivals


def _amount(value: Decimal, currency: str) -> dict[str, str]:
    return {"amount": f"{value.quantize(CENT):f}", "currency": currency}


def _decimal(call: Call, value: object, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise call.bad_request(f"{name} must be a decimal amount")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise call.bad_request(f"{name} must be a decimal amount") from None
    if not number.is_finite():
        raise call.bad_request(f"{name} must be finite")
    return number
