"""The Back Market seller API client (httpx), for one store (one country) of one account.

Every request carries ``Authorization: Basic <token>``, the store's ``Accept-Language``, the
mandatory ``User-Agent`` and JSON headers. The token lives in a ``SecretStr`` and in the
``httpx.Client``'s headers only: it is never logged, never put in an exception, never in a
repr. The endpoints are here; the session, its retries and the classification of failures
(``classify``) are in ``syncer.backmarket.transport``.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote, urlsplit

import structlog
from pydantic import BaseModel

from syncer.backmarket.answers import (
    Listing,
    ListingPage,
    Order,
    OrderPage,
    Task,
    checked,
    checked_competitors,
)
from syncer.backmarket.transport import Transport
from syncer.core.competition import Competition
from syncer.core.offers import sku_key
from syncer.errors import ApiError, OfferError, OutcomeUnknown

log = structlog.get_logger("syncer.backmarket.client")

PAGE_SIZE: Final = 50
MAX_PAGES: Final = 200_000  # 10 million listings or orders: past this, a paging loop
MAX_BATCH_LINES: Final = 15_000
TASK_DONE: Final = 9
TASK_FAILED: Final = 8
BATCH_DIALECT: Final = {"delimiter": ";", "quotechar": '"', "encoding": "utf-8"}


class BackMarketClient:
    """The seller API's endpoints for one store, through its ``transport``."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.base_url = transport.base_url
        self.locale = transport.locale
        self.store = transport.store
        self.stats = transport.stats

    @property
    def last_request_id(self) -> str | None:
        """The X-Request-Id of the last answer that succeeded (see ``Transport``)."""
        return self.transport.last_request_id

    def __repr__(self) -> str:
        return f"BackMarketClient(base_url={self.base_url!r}, store={self.store!r})"

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> BackMarketClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self) -> int:
        """One cheap authenticated call; returns how many listings the account has."""
        return self._count("/ws/listings")

    def _count(self, path: str) -> int:
        body = checked(ListingPage,
                       self.transport.json("GET", path, params={"page": 1, "page-size": 1}),
                       f"GET {path}")
        return int(body.get("count") or 0)

    def iter_listings(self, **filters: int) -> Iterator[dict[str, Any]]:
        """Every listing, page by page (``page-size`` 50), following ``next`` until null."""
        return self._paged("/ws/listings", filters, ListingPage)

    def _paged(self, path: str, filters: Mapping[str, Any],
               model: type[BaseModel]) -> Iterator[dict[str, Any]]:
        """Every result, page after page. A ``next`` link that does not advance, or pages
        beyond what ``count`` announced, stop with an error: a broken or hostile server
        must not keep a run (and its lock) forever."""
        page, last, previous, size = 1, None, None, PAGE_SIZE
        while True:
            where = f"GET {path} page {page}"
            body = checked(model, self.transport.json(
                "GET", path, params={**filters, "page": page, "page-size": PAGE_SIZE}), where)
            results = body.get("results") or []
            following = body.get("next")
            if following and (not results or results == previous):
                raise ApiError(f"{where}: {'an empty page' if not results else 'the same page'} "
                               "links to a next one; stopped reading pages")
            yield from results
            if not following:
                return
            if page == 1:
                # Pages as long as the first one, which may be fewer than asked for (the real
                # API answered 10 when sent page_size=100): the bound counts what was served.
                size = min(len(results), PAGE_SIZE)
            if isinstance(body.get("count"), int):
                last = max(1, -(-body["count"] // size))
            following_page = _next_page(following, page)
            if following_page <= page or (last is not None and following_page > last + 1) \
                    or following_page > MAX_PAGES:
                raise ApiError(f"{where}: the next page link ({following_page}) does not lead "
                               f"forward (count {body.get('count')!r}); stopped reading pages")
            page, previous = following_page, results

    def category_tree(self) -> list[dict[str, Any]]:
        """Back Market's category tree: leaf categories and the attributes a product of
        each must give."""
        response = self.transport.send("GET", "/ws/category/tree", params=None,
                                       json_body=None, idempotent=True)
        try:
            body = response.json()
        except ValueError:
            raise ApiError("GET /ws/category/tree: answer is not JSON") from None
        if not isinstance(body, list):
            raise ApiError(f"GET /ws/category/tree: unexpected answer {str(body)[:200]!r}")
        return body

    def get_listing(self, listing_id: str) -> dict[str, Any]:
        return checked(Listing, self.transport.json("GET", f"/ws/listings/{listing_id}"),
                       "GET /ws/listings/{id}")

    def find_listing(self, sku: str) -> dict[str, Any] | None:
        """The listing with this SKU (matched case-insensitively by Back Market), or None."""
        try:
            return checked(Listing,
                           self.transport.json("GET", "/ws/listings/detail", params={"sku": sku}),
                           "GET /ws/listings/detail")
        except OfferError as exc:
            if exc.status == 404:
                return None
            raise

    def find_listings(self, skus: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Listings of these SKUs, keyed by case-folded SKU (missing ones absent): one lookup
        per SKU, or one pass over every page when that takes fewer requests."""
        wanted = {sku_key(sku) for sku in skus}
        if len(wanted) > PAGE_SIZE:
            pages = -(-self._count("/ws/listings") // PAGE_SIZE)
            if pages < len(wanted):
                return {key: listing for listing in self.iter_listings()
                        if (key := sku_key(str(listing.get("sku", "")))) in wanted}
        found = {}
        for sku in dict.fromkeys(skus):
            listing = self.find_listing(sku)
            if listing is not None:
                found[sku_key(sku)] = listing
        return found

    def update_listing(self, listing_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Real-time update of the given fields. Idempotent: values are absolute."""
        return self.transport.json("POST", f"/ws/listings/{listing_id}", json_body=dict(fields))

    def create_batch(self, columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> int:
        """POST a batch CSV; returns the task id. Never re-sent blindly: if the request may
        have reached Back Market without an answer, ``OutcomeUnknown`` is raised and the
        caller finds out from the listings."""
        if len(rows) > MAX_BATCH_LINES - 1:
            raise ValueError(f"a batch holds at most {MAX_BATCH_LINES - 1} rows")
        body = {"catalog": batch_csv(columns, rows), **BATCH_DIALECT}
        answer = self.transport.json("POST", "/ws/listings", json_body=body, idempotent=False)
        task = answer.get("bodymessage")
        if not isinstance(task, int):
            raise OutcomeUnknown(f"batch accepted without a task id: {answer!r}"[:300])
        return task

    def get_task(self, task_id: int) -> dict[str, Any]:
        """The task, its ``result`` checked for the shapes ``syncer.backmarket.taskresult`` reads: a
        malformed one is one ApiError naming the field."""
        return checked(Task, self.transport.json("GET", f"/ws/tasks/{task_id}"),
                       "GET /ws/tasks/{id}")

    def wait_task(self, task_id: int, *, poll_seconds: float, timeout_seconds: float,
                  clock: Callable[[], float] = time.monotonic,
                  on_poll: Callable[[], None] = lambda: None) -> dict[str, Any]:
        """Poll a task until it is done (9) or failed (8); TimeoutError past the timeout.
        ``on_poll`` runs between polls (the caller keeps its lock lease alive there)."""
        deadline = clock() + timeout_seconds
        while True:
            task = self.get_task(task_id)
            if task.get("action_status") in (TASK_DONE, TASK_FAILED):
                return task
            if clock() >= deadline:
                raise TimeoutError(f"task {task_id} not finished after {timeout_seconds:.0f} s")
            on_poll()
            self.transport.sleep(poll_seconds)

    def iter_orders(self, **filters: str | int) -> Iterator[dict[str, Any]]:
        """Orders matching the filters (``state``, ``country_code``, ``date_creation``,
        ``date_modification``), page by page, following ``next`` until null. Back Market
        never lists orders in state 0 (payment check) or 8 (not paid)."""
        return self._paged("/ws/orders", filters, OrderPage)

    def get_order(self, order_id: int) -> dict[str, Any]:
        return checked(Order, self.transport.json("GET", f"/ws/orders/{int(order_id)}"),
                       "GET /ws/orders/{id}")

    def update_order(self, order_id: int, body: Mapping[str, Any], *,
                     applied: Callable[[dict[str, Any]], bool] | None = None
                     ) -> dict[str, Any]:
        """POST an ``UpdateOrder`` (a state change); returns the order as Back Market shows
        it after. 429s and connections refused are retried (nothing was applied); when the
        answer is lost or a 5xx leaves the outcome unknown, the order is read back and the
        request is re-sent only if ``applied(order)`` says it did not land: accepting or
        shipping twice is refused by Back Market as an illegal transition. Without
        ``applied``, ``OutcomeUnknown`` is raised."""
        # The spec's UpdateOrder requires `id` and asks for `order_id` equal to the URL's.
        payload = {"order_id": int(order_id), "id": int(order_id), **body}
        attempt = 0
        while True:
            try:
                return self.transport.json("POST", f"/ws/orders/{int(order_id)}",
                                           json_body=payload, idempotent=False)
            except OutcomeUnknown as exc:
                http = self.transport
                if applied is None or attempt >= http.max_retries:
                    raise
                attempt += 1
                self.stats.retries += 1
                wait = http.rng.uniform(0, min(http.backoff_cap, http.backoff_base * 2 ** attempt))
                log.info("order update outcome unknown; reading the order back",
                         store=self.store, order_id=order_id, error=exc.message,
                         wait=round(wait, 2))
                if wait:
                    http.sleep(wait)
                order = self.get_order(order_id)
                if applied(order):
                    return order

    def competitors(self, listing_id: str, *, read_at: datetime | None = None
                    ) -> list[Competition]:
        """What each market's BackBox says of one of our listings (``GET
        /ws/backbox/v1/competitors/{listingId}``, 2 calls a second per token: the limiter's
        backbox routes). An answer of the wrong shape is one ApiError naming the field."""
        where = "GET /ws/backbox/v1/competitors/{id}"
        response = self.transport.send(
            "GET", f"/ws/backbox/v1/competitors/{quote(listing_id, safe='')}",
            params=None, json_body=None, idempotent=True)
        try:
            body = response.json()
        except ValueError:
            raise ApiError(f"{where}: answer is not JSON") from None
        entries = checked_competitors(body, where)
        when = read_at or datetime.now(UTC)
        found = []
        for number, entry in enumerate(entries):
            currency = entry["price"]["currency"]
            for name in ("min_price", "price_to_win", "winner_price"):
                amount = entry.get(name)
                if amount is not None and amount["currency"] != currency:
                    raise ApiError(f"{where}: unexpected answer from Back Market: field "
                                   f"{number}.{name}.currency: {amount['currency']!r}, not "
                                   f"the price's {currency!r}")
            found.append(Competition(
                listing_id=entry["listing_id"], market=entry["market"], currency=currency,
                price=Decimal(entry["price"]["amount"]),
                min_price=_amount_of(entry.get("min_price")),
                price_to_win=Decimal(entry["price_to_win"]["amount"]),
                winner_price=_amount_of(entry.get("winner_price")),
                is_winning=entry["is_winning"], read_at=when))
        return found

    def upload_invoice(self, order_id: int, pdf: bytes, filename: str) -> None:
        """POST the seller's invoice for an order: ``multipart/form-data`` with the PDF in a
        part named ``invoice`` (the spec). Sending the same file again only replaces the
        invoice with itself, so an upload whose answer was lost is retried like a read."""
        boundary = f"syncer-{uuid.uuid4().hex}"
        name = filename.replace('"', "").replace("\r", "").replace("\n", "") or "invoice.pdf"
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="invoice"; '
                f'filename="{name}"\r\nContent-Type: application/pdf\r\n\r\n'
                ).encode() + pdf + f"\r\n--{boundary}--\r\n".encode("ascii")
        self.transport.send("POST", f"/ws/orders/{int(order_id)}/invoice", params=None,
                            json_body=None, idempotent=True,
                            raw=(body, f"multipart/form-data; boundary={boundary}"))

    def update_orderline(self, orderline_id: int, fields: Mapping[str, str]) -> dict[str, Any]:
        """PATCH an orderline's ``imei`` and/or ``serial_number``: set once, never corrected,
        so never re-sent blindly (an unknown outcome raises ``OutcomeUnknown``; the caller
        reads the order back)."""
        return self.transport.json("PATCH", f"/ws/orderlines/{int(orderline_id)}",
                                   json_body=dict(fields), idempotent=False)


def _next_page(following: str, page: int) -> int:
    """The page number from a ``next`` URL. Only the number is used: the token is never sent
    to whatever host a response names."""
    query = urlsplit(following).query
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "page" and value.isdigit():
            return int(value)
    return page + 1


def _amount_of(amount: Mapping[str, Any] | None) -> Decimal | None:
    return None if amount is None else Decimal(amount["amount"])


def batch_csv(columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> str:
    """Back Market's CSV dialect: ';' separated, every field double-quoted, '\\n' lines."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", quotechar='"', quoting=csv.QUOTE_ALL,
                        lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(column, "") for column in columns])
    return out.getvalue()
