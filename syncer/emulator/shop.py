"""An emulator of the parse.bot Back Market scraper API: the public shop as buyers see it.

Endpoints, under ``/scraper/{scraper_id}/`` with the ``X-API-Key`` header (see
``shared/reference/seeds/``, the backmarket.fr API):
- ``get_product_details?product_id=<uuid>`` (or ``product_url``): ``{"data": {uuid, brand,
  model, title, images, rating, variants, availability, review_count, original_price,
  starting_price}, "status": "success"}``; ``variants`` holds one ``grades`` group whose items
  are the grades on sale with their lowest price ``{amount, currency}``;
- ``get_product_reviews``: ``{"data": {reviews (at most 7), average_rating, review_count}}``.

What is on sale comes from the Back Market emulator it watches: the listings with stock and a
price in its market (``fr-fr`` by default) of every seller, and the rivals of its competitive
market (``syncer.emulator.market``). A product nobody sells answers 404.

Limits as the tiers have them: ``requests_per_minute`` per key (beyond: 429) and
``monthly_credits`` per key (one credit a call; beyond: 402). ``exchanges`` logs each call
(method, path, query, status), never the key.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from syncer.emulator.emulator import Emulator
from syncer.emulator.http import LoopbackServer, Response, known_secret, take_slot
from syncer.emulator.market import market_of

LABELS: Final = {"PREMIUM": "Premium", "EXCELLENT": "Parfait état", "VERY_GOOD": "Très bon état",
                 "GOOD": "Bon état", "FAIR": "État correct", "STALLONE": "Stallone"}
UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class ShopEmulator:
    def __init__(self, emulator: Emulator, *, keys: tuple[str, ...] = ("shop-key",),
                 requests_per_minute: int = 5, monthly_credits: int = 100,
                 locale: str = "fr-fr") -> None:
        self.emulator = emulator
        self.keys = keys
        self.requests_per_minute = requests_per_minute
        self.monthly_credits = monthly_credits
        self.locale = locale
        self.credits_used: dict[str, int] = {}
        self.exchanges: list[dict[str, Any]] = []
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def handle(self, method: str, target: str, headers: Mapping[str, str],
               body: bytes = b"") -> Response:
        split = urlsplit(target)
        query = dict(parse_qsl(split.query))
        with self._lock:
            status, data = self._answer(method, split.path, query,
                                        {k.lower(): v for k, v in headers.items()})
            self.exchanges.append({"method": method, "path": split.path, "query": query,
                                   "status": status})
        return Response(status, {"Content-Type": "application/json"},
                        json.dumps(data).encode("utf-8"))

    def _answer(self, method: str, path: str, query: dict[str, str],
                headers: dict[str, str]) -> tuple[int, Any]:
        key = known_secret(headers.get("x-api-key", ""), self.keys)
        if key is None:
            return 401, {"status": "error", "message": "invalid or missing X-API-Key"}
        now = self.emulator.config.clock()
        if not take_slot(self._calls.setdefault(key, deque()), now, 60,
                         self.requests_per_minute):
            return 429, {"status": "error", "message": "rate limit exceeded"}
        if self.credits_used.get(key, 0) >= self.monthly_credits:
            return 402, {"status": "error", "message": "monthly credits exhausted"}
        self.credits_used[key] = self.credits_used.get(key, 0) + 1
        match = re.fullmatch(r"/scraper/[^/]+/(get_product_details|get_product_reviews)", path)
        if method != "GET" or match is None:
            return 404, {"status": "error", "message": "no such endpoint"}
        product = query.get("product_id") or ""
        if not product:
            found = UUID.findall(urlsplit(query.get("product_url", "")).path.lower())
            product = found[-1] if found else ""
        if not product:
            return 400, {"status": "error",
                         "message": "either product_id or product_url must be provided"}
        details = self._details(product.lower())
        if details is None:
            return 404, {"status": "error", "message": "product not found"}
        if match.group(1) == "get_product_reviews":
            return 200, {"status": "success", "data": {
                "reviews": [], "average_rating": details["rating"],
                "review_count": details["review_count"]}}
        return 200, {"status": "success", "data": details}

    def _details(self, product: str) -> dict[str, Any] | None:
        """The product page: the lowest price of each grade on sale in the shop's market."""
        with self.emulator.shared.lock:
            offers: dict[str, Decimal] = {}
            title = None
            market = market_of(self.locale)
            for token in self.emulator.config.tokens:
                for listing in self.emulator.listings(token):
                    if listing["product_id"] != product:
                        continue
                    title = title or listing.get("title")
                    data = listing["markets"].get(self.locale) or {}
                    if listing["quantity"] > 0 and data.get("price") is not None:
                        _lowest(offers, listing["grade"], Decimal(data["price"]))
            for (product_id, grade, where), rivals in self.emulator.market_book.rivals.items():
                if product_id == product and where == market:
                    for rival in rivals.values():
                        _lowest(offers, grade, rival.price)
        if not offers and title is None:
            return None
        currency = self.emulator.market_book.emulator_currency(self.locale)
        items = [{"label": LABELS.get(grade, grade),
                  "price": {"amount": f"{price:.2f}", "currency": currency}}
                 for grade, price in sorted(offers.items(), key=lambda item: item[1])]
        return {
            "uuid": product, "brand": None, "model": None, "title": title or "", "images": [],
            "rating": 4.5, "review_count": 100 + int(product[:4], 16) % 900,
            "variants": [{"id": "grades", "label": "État", "items": items}] if items else [],
            "availability": {"in_stock": bool(offers), "can_add_to_cart": bool(offers)},
            "original_price": None,
            "starting_price": f"{min(offers.values()):.2f}" if offers else None,
        }


def _lowest(offers: dict[str, Decimal], grade: str, price: Decimal) -> None:
    if price > 0 and (grade not in offers or price < offers[grade]):
        offers[grade] = price


class ShopServer:
    """The shop emulator behind a real HTTP server on a loopback port (a daemon thread)."""

    def __init__(self, shop: ShopEmulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.shop = shop
        self._server = LoopbackServer(shop, host, port, "shop-emulator")
        self.base_url = ""

    def start(self) -> ShopServer:
        self._server.start()
        self.base_url = f"{self._server.base_url}/scraper/emulated"
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> ShopServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
