"""The HTTP transport of the Back Market client: one store's authenticated session, each
request retried by what its failure says (``classify``), paced by the account's limiter,
bounded by a deadline (a third of the caller's lock lease) and by the size and time of its
answer. The token lives in a ``SecretStr`` and in the ``httpx.Client``'s headers only: it is
never logged, never put in an exception, never in a repr. The ``httpx.Client`` is injectable:
tests pass one built on ``httpx.MockTransport`` or talk to the emulator over loopback.
"""

from __future__ import annotations

import functools
import json
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import structlog
from pydantic import SecretStr

from syncer.backmarket.limits import ApiLimits
from syncer.config.sections import LOOPBACK_HOSTS
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

log = structlog.get_logger("syncer.backmarket.client")

# An answer is read up to this size (the category tree, the biggest, is a few MB).
MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


class Transport:
    """Sends one store's requests and returns their answers, or the error that says what to
    do about them (``syncer.errors``)."""

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
        return f"Transport(base_url={self.base_url!r}, store={self.store!r})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def json(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              json_body: Any = None, idempotent: bool = True) -> dict[str, Any]:
        response = self.send(method, path, params=params, json_body=json_body,
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

    def send(self, method: str, path: str, *, params: Mapping[str, Any] | None,
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
