"""The Back Market seller API client (httpx), for one store (one country) of one account.

Every request carries ``Authorization: Basic <token>``, the store's ``Accept-Language``, the
mandatory ``User-Agent`` and JSON headers. The token lives in a ``SecretStr`` and in the
``httpx.Client``'s headers only: it is never logged, never put in an exception, never in a
repr. Failures are classified once, in ``classify``, by what to do about them (see
``syncer.errors``). The transport is injectable: tests pass an ``httpx.Client`` built on
``httpx.MockTransport`` for unit tests or talk to the emulator over loopback.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import random
import ssl
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx
import structlog
from pydantic import BaseModel, SecretStr

from syncer.backmarket.answers import (
    Listing,
    ListingPage,
    Order,
    OrderPage,
    Task,
    checked,
    checked_competitors,
)
from syncer.backmarket.limits import ApiLimits
from syncer.backmarket.taskresult import SentLine, TaskOutcome, TaskReport, task_outcomes
from syncer.config.settings import LOOPBACK_HOSTS
from syncer.core.competition import Competition
from syncer.core.offers import sku_key
from syncer.errors import (
    ApiError,
    Blocked,
    FatalApiError,
    OfferError,
    OutcomeUnknown,
    RateLimited,
    RetriableError,
    TokenRejected,
)

__all__ = ["BackMarketClient", "SentLine", "TaskOutcome", "TaskReport", "batch_csv",
           "classify", "task_outcomes"]

log = structlog.get_logger("syncer.backmarket.client")

PAGE_SIZE: Final = 50
MAX_PAGES: Final = 200_000  # 10 million listings or orders: past this, a paging loop
# An answer is read up to this size (the category tree, the biggest, is a few MB).
MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024
MAX_BATCH_LINES: Final = 15_000
TASK_DONE: Final = 9
TASK_FAILED: Final = 8
BATCH_DIALECT: Final = {"delimiter": ";", "quotechar": '"', "encoding": "utf-8"}


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


class BackMarketClient:
    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        locale: str,
        user_agent: str,
        *,
        store: str = "",
        http: httpx.Client | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        limiter: ApiLimits | None = None,
        rate_block_seconds: float = 10.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        keep_alive: Callable[[], None] = lambda: None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" and not (parts.scheme == "http"
                                            and parts.hostname in LOOPBACK_HOSTS):
            raise ValueError(f"refusing {parts.scheme}:// to {parts.hostname}: the token is only "
                             "sent over https (plain http only to a loopback emulator)")
        self.base_url = base_url.rstrip("/")
        self.locale = locale
        self.store = store or locale
        self.max_retries = max_retries
        self.limiter = limiter
        self.rate_block_seconds = rate_block_seconds
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self.rng = rng or random.Random()
        # Seconds one request may take, its retries and waits included (a third of the
        # caller's lock lease); ``keep_alive`` runs before every attempt (renews the lease).
        self.timeout = timeout
        self.deadline = deadline
        self.clock = clock
        self.keep_alive = keep_alive
        self.stats = ClientStats()
        # The X-Request-Id of the last answer that succeeded, when the server sends one (the
        # run-results file; Back Market documents a requestId in error bodies only).
        self.last_request_id: str | None = None
        headers = {
            "Authorization": f"Basic {token.get_secret_value()}",
            "Accept-Language": locale,
            "User-Agent": user_agent,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout, verify=_tls_context())
        self._headers = headers
        self._host = urlsplit(self.base_url).netloc  # named in transport errors

    def __repr__(self) -> str:
        return f"BackMarketClient(base_url={self.base_url!r}, store={self.store!r})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> BackMarketClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- listings -------------------------------------------------------------------------
    def check(self) -> int:
        """One cheap authenticated call; returns how many listings the account has."""
        return self._count("/ws/listings")

    def _count(self, path: str) -> int:
        body = checked(ListingPage, self._json("GET", path, params={"page": 1, "page-size": 1}),
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
            body = checked(model, self._json(
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
        response = self._send("GET", "/ws/category/tree", params=None, json_body=None,
                              idempotent=True)
        try:
            body = response.json()
        except ValueError:
            raise ApiError("GET /ws/category/tree: answer is not JSON") from None
        if not isinstance(body, list):
            raise ApiError(f"GET /ws/category/tree: unexpected answer {str(body)[:200]!r}")
        return body

    def get_listing(self, listing_id: str) -> dict[str, Any]:
        return checked(Listing, self._json("GET", f"/ws/listings/{listing_id}"),
                       "GET /ws/listings/{id}")

    def find_listing(self, sku: str) -> dict[str, Any] | None:
        """The listing with this SKU (matched case-insensitively by Back Market), or None."""
        try:
            return checked(Listing, self._json("GET", "/ws/listings/detail", params={"sku": sku}),
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
        return self._json("POST", f"/ws/listings/{listing_id}", json_body=dict(fields))

    # --- batches and tasks ----------------------------------------------------------------
    def create_batch(self, columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> int:
        """POST a batch CSV; returns the task id. Never re-sent blindly: if the request may
        have reached Back Market without an answer, ``OutcomeUnknown`` is raised and the
        caller finds out from the listings."""
        if len(rows) > MAX_BATCH_LINES - 1:
            raise ValueError(f"a batch holds at most {MAX_BATCH_LINES - 1} rows")
        body = {"catalog": batch_csv(columns, rows), **BATCH_DIALECT}
        answer = self._json("POST", "/ws/listings", json_body=body, idempotent=False)
        task = answer.get("bodymessage")
        if not isinstance(task, int):
            raise OutcomeUnknown(f"batch accepted without a task id: {answer!r}"[:300])
        return task

    def get_task(self, task_id: int) -> dict[str, Any]:
        """The task, its ``result`` checked for the shapes ``syncer.backmarket.taskresult`` reads: a
        malformed one is one ApiError naming the field."""
        return checked(Task, self._json("GET", f"/ws/tasks/{task_id}"), "GET /ws/tasks/{id}")

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
            self.sleep(poll_seconds)

    # --- orders ---------------------------------------------------------------------------
    def iter_orders(self, **filters: str | int) -> Iterator[dict[str, Any]]:
        """Orders matching the filters (``state``, ``country_code``, ``date_creation``,
        ``date_modification``), page by page, following ``next`` until null. Back Market
        never lists orders in state 0 (payment check) or 8 (not paid)."""
        return self._paged("/ws/orders", filters, OrderPage)

    def get_order(self, order_id: int) -> dict[str, Any]:
        return checked(Order, self._json("GET", f"/ws/orders/{int(order_id)}"),
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
                return self._json("POST", f"/ws/orders/{int(order_id)}", json_body=payload,
                                  idempotent=False)
            except OutcomeUnknown as exc:
                if applied is None or attempt >= self.max_retries:
                    raise
                attempt += 1
                self.stats.retries += 1
                wait = self.rng.uniform(0, min(self.backoff_cap,
                                               self.backoff_base * 2 ** attempt))
                log.info("order update outcome unknown; reading the order back",
                         store=self.store, order_id=order_id, error=exc.message,
                         wait=round(wait, 2))
                if wait:
                    self.sleep(wait)
                order = self.get_order(order_id)
                if applied(order):
                    return order

    # --- competition (BackBox) ------------------------------------------------------------
    def competitors(self, listing_id: str, *, read_at: datetime | None = None
                    ) -> list[Competition]:
        """What each market's BackBox says of one of our listings (``GET
        /ws/backbox/v1/competitors/{listingId}``, 2 calls a second per token: the limiter's
        backbox routes). An answer of the wrong shape is one ApiError naming the field."""
        where = "GET /ws/backbox/v1/competitors/{id}"
        response = self._send("GET", f"/ws/backbox/v1/competitors/{quote(listing_id, safe='')}",
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
        self._send("POST", f"/ws/orders/{int(order_id)}/invoice", params=None, json_body=None,
                   idempotent=True, raw=(body, f"multipart/form-data; boundary={boundary}"))

    def update_orderline(self, orderline_id: int, fields: Mapping[str, str]) -> dict[str, Any]:
        """PATCH an orderline's ``imei`` and/or ``serial_number``: set once, never corrected,
        so never re-sent blindly (an unknown outcome raises ``OutcomeUnknown``; the caller
        reads the order back)."""
        return self._json("PATCH", f"/ws/orderlines/{int(orderline_id)}",
                          json_body=dict(fields), idempotent=False)

    # --- transport ------------------------------------------------------------------------
    def _json(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              json_body: Any = None, idempotent: bool = True) -> dict[str, Any]:
        response = self._send(method, path, params=params, json_body=json_body,
                              idempotent=idempotent)
        try:
            body = response.json()
        except ValueError:
            raise ApiError(f"{method} {path}: answer is not JSON (HTTP {response.status_code})",
                           status=response.status_code) from None
        if not isinstance(body, dict):
            raise ApiError(f"{method} {path}: unexpected answer {str(body)[:200]!r}",
                           status=response.status_code)
        return body

    def _send(self, method: str, path: str, *, params: Mapping[str, Any] | None,
              json_body: Any, idempotent: bool, raw: tuple[bytes, str] | None = None
              ) -> httpx.Response:
        """``raw``: a body that is not JSON (an upload) and its content type."""
        attempt = 0
        url = self.base_url + path
        content = None if json_body is None else json.dumps(json_body).encode("utf-8")
        headers = self._headers
        if raw is not None:
            content, headers = raw[0], {**self._headers, "Content-Type": raw[1]}
        ends = None if self.deadline is None else self.clock() + self.deadline
        error: ApiError | None = None
        while True:
            self.keep_alive()
            if self.limiter is not None:
                self.limiter.acquire(method, path)
            timeout: Any = httpx.USE_CLIENT_DEFAULT  # or what is left of the deadline
            if ends is not None:
                left = ends - self.clock()
                if left <= 0 and error is not None:  # the rate limiter's wait used it up
                    raise self._give_up(error, method, path)
                if left < self.timeout:
                    timeout = max(left, 0.001)
            self.stats.requests += 1
            try:
                response = self._receive(method, url, params, content, timeout, headers)
            except httpx.TransportError as exc:
                self.stats.transport_errors += 1
                error = _transport_error(exc, method, path, idempotent, self._host)
            else:
                self.stats.by_status[response.status_code] = \
                    self.stats.by_status.get(response.status_code, 0) + 1
                if response.status_code < 400:
                    self.last_request_id = response.headers.get("x-request-id")
                    return response
                error = classify(response, store=self.store, idempotent=idempotent)
            if not isinstance(error, RetriableError) or isinstance(error, OutcomeUnknown) \
                    or attempt >= self.max_retries:
                raise error
            if isinstance(error, RateLimited):
                self.stats.rate_limited += 1
                pause = self.rate_block_seconds
            else:
                if error.status is not None:
                    self.stats.server_errors += 1
                pause = self.rng.uniform(0, min(self.backoff_cap,
                                                self.backoff_base * 2 ** (attempt + 1)))
            if ends is not None and self.clock() + pause >= ends:
                raise self._give_up(error, method, path)
            attempt += 1
            self.stats.retries += 1
            wait = pause
            if isinstance(error, RateLimited) and self.limiter is not None:
                self.limiter.block(pause)  # the limiter waits it out, for every store
                wait = 0
            log.info("retrying", store=self.store, method=method, path=path, attempt=attempt,
                     error=error.message, wait=round(wait, 2))
            if wait:
                self.sleep(wait)

    def _receive(self, method: str, url: str, params: Mapping[str, Any] | None,
                 content: bytes | None, timeout: Any,
                 request_headers: Mapping[str, str] | None = None) -> httpx.Response:
        """The whole answer, within ``timeout_seconds`` of sending (httpx's timeouts bound
        each read: a server dripping a byte a second would hold the run, and its lock, for
        as long as it likes) and at most ``MAX_ANSWER_BYTES`` once decoded."""
        limit = timeout if isinstance(timeout, int | float) else self.timeout
        started = time.monotonic()
        with self._http.stream(method, url, params=params, content=content,
                               headers=request_headers or self._headers,
                               timeout=timeout) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise ApiError(f"{method} {urlsplit(url).path}: answer larger than "
                                   f"{MAX_ANSWER_BYTES // 2**20} MiB; not read further",
                                   status=response.status_code)
                chunks.append(chunk)
                if time.monotonic() - started > limit:
                    raise httpx.ReadTimeout(f"answer not complete after {limit:g} s",
                                            request=response.request)
            headers = [(k, v) for k, v in response.headers.multi_items()
                       if k.lower() not in ("content-encoding", "content-length",
                                            "transfer-encoding")]
            return httpx.Response(response.status_code, headers=headers,
                                  content=b"".join(chunks), request=response.request)

    def _give_up(self, error: ApiError, method: str, path: str) -> ApiError:
        """Past the request's deadline: the error of the last attempt, as when the retries
        run out (a retry would outlive the share of the lock lease a request may take)."""
        log.warning("giving up: past the request's deadline", store=self.store,
                    method=method, path=path, deadline=self.deadline, error=error.message)
        return error


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client of the process: loading the CA bundle costs tens of
    milliseconds, and a run makes a client per store."""
    return httpx.create_ssl_context()


def classify(response: httpx.Response, *, store: str, idempotent: bool = True) -> ApiError:
    """Turn an error answer into the exception that says what to do about it."""
    status = response.status_code
    code, message, request_id = _error_details(response)
    request_id = request_id or response.headers.get("x-request-id")
    where = f"{response.request.method} {response.request.url.path}"
    if status == 429:
        return RateLimited(f"{where}: rate limited by Back Market (HTTP 429)", status=status,
                           code=code, request_id=request_id)
    if status == 401:
        return TokenRejected(f"token rejected for store {store} (HTTP 401): check the token in "
                             "the Back Market back office (it changes with the password)",
                             status=status, code=code, request_id=request_id)
    if status == 403:
        cf_ray = response.headers.get("cf-ray")
        what = "bot management" if code == "bot-need-challenge" else \
            "the firewall (WAF)" if cf_ray else "Back Market"
        detail = f"; cf-ray {cf_ray} (send it to your Back Market contact)" if cf_ray else \
            f": {message}" if message else ""
        return Blocked(f"request blocked by {what} for store {store} (HTTP 403){detail}",
                       cf_ray=cf_ray, code=code, request_id=request_id)
    if status >= 500:
        text = f"{where}: Back Market server error (HTTP {status})"
        if not idempotent:
            return OutcomeUnknown(text + "; the request may have been applied", status=status,
                                  request_id=request_id)
        return RetriableError(text, status=status, request_id=request_id)
    if status in (400, 404, 409, 422):
        return OfferError(message or f"{where}: HTTP {status}", status=status, code=code,
                          request_id=request_id)
    return FatalApiError(f"{where}: unexpected HTTP {status}: {message or ''}".rstrip(": "),
                         status=status, code=code, request_id=request_id)


def _error_details(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        if text.startswith("<"):
            return None, None, None
        return None, text[:500] or None, None
    if isinstance(body, str):
        return None, body[:500], None
    if isinstance(body, dict):
        request_id = body.get("requestId")
        error = body.get("error")
        if isinstance(error, dict):
            return error.get("code"), error.get("message"), request_id
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return errors[0].get("code"), errors[0].get("message"), request_id
        for key in ("detail", "message", "error"):
            if isinstance(body.get(key), str):
                return None, body[key][:500], request_id
    return None, str(body)[:500], None


def _transport_error(exc: httpx.TransportError, method: str, path: str,
                     idempotent: bool, host: str = "") -> ApiError:
    name = type(exc).__name__ + (f" from {host}" if host else "")
    if isinstance(exc, httpx.ReadTimeout) and str(exc).startswith("answer not complete"):
        name += f": {exc}"
    # Connect failures never reached the server: safe to retry even a batch POST.
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if not idempotent and not never_sent:
        return OutcomeUnknown(f"{method} {path}: connection lost ({name}); the request may have "
                              "been applied")
    return RetriableError(f"{method} {path}: {name}")


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
