"""The emulators' HTTP plumbing: a request as handlers see it, their replies, the routing, the
exchange log's entries, and a loopback server in a daemon thread.

Nothing here knows Back Market's model: every other module of the package builds on it, and
it imports none of them.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Protocol, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = [
    "EXCHANGE_LOG_SIZE",
    "Call",
    "Exchange",
    "HttpError",
    "LoopbackServer",
    "Reply",
    "Response",
    "Router",
    "error_v1",
    "known_secret",
    "page_params",
    "paged",
    "query_int",
    "render",
    "take_slot",
]

EXCHANGE_LOG_SIZE: Final = 10_000
DEFAULT_PAGE_SIZE: Final = 10
MAX_PAGE_SIZE: Final = 50


@dataclass(frozen=True)
class Exchange:
    """One request handled and what was answered (the Authorization header is never kept)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    request: Any  # the JSON body, else its text, None when empty
    status: int | None  # None: the connection was dropped without a response
    response: Any  # the JSON body, else its text; None when dropped
    response_headers: dict[str, str]
    request_id: str
    dropped: str | None = None  # "before" or "after" the request was processed
    # The fault that answered instead of the endpoint: "429", "5xx" (nothing processed) or
    # "5xx-after" (processed, then answered with an error); None when the endpoint answered.
    fault: str | None = None
    at: float = 0.0  # the emulator's clock when the request was handled
    # Fields of the request body the endpoint ignored (not in its request body in the spec).
    ignored: tuple[str, ...] = ()


@dataclass
class Response:
    """What the HTTP layer must do: wait ``delay`` seconds, then answer, or drop the line."""

    status: int
    headers: dict[str, str]
    body: bytes
    delay: float = 0.0
    drop: bool = False


@dataclass
class Reply:
    """A handler's answer: ``data`` is sent as JSON, unless ``text`` (HTML) is given."""

    status: int
    data: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class HttpError(Exception):
    """Raised by handlers to answer with ``reply`` at once."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def error_v1(status: int, code: str, message: str) -> Reply:
    """An ``ErrorResponseV1`` body; the request id is added when it is sent."""
    return Reply(status, {"error": {"code": code, "message": message}})


@dataclass
class Call:
    """One request as a handler sees it (headers with lower-case names)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    request_id: str
    token: str = ""
    locale: str = ""
    params: dict[str, str] = field(default_factory=dict)
    fault: str | None = None  # the injected fault that answered it (see Exchange.fault)
    ignored: tuple[str, ...] = ()  # body fields the endpoint ignored (see Exchange.ignored)
    # The spec documents a bare JSON string as the 400 body of this operation.
    string_errors: bool = False

    @classmethod
    def parse(cls, method: str, target: str, headers: Mapping[str, str], body: bytes,
              request_id: str) -> Call:
        """The call of an HTTP request (``target``: the path with its query string)."""
        split = urlsplit(target)
        return cls(
            method=method.upper(),
            path=split.path.rstrip("/") or "/",
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in headers.items()},
            body=body,
            request_id=request_id,
        )

    def bad_request(self, message: str) -> HttpError:
        if self.string_errors:
            return HttpError(Reply(400, message))
        return HttpError(error_v1(400, "invalid_request", message))

    def json_object(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body.decode("utf-8")) if self.body.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self.bad_request(f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise self.bad_request("request body must be a JSON object")
        return data


def query_int(call: Call, name: str, *, minimum: int | None = None) -> int | None:
    """An integer query parameter, or a 400 in the spec's shape."""
    raw = call.query.get(name, "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"[+-]?\d+", raw):
        raise call.bad_request(f"{name} must be an integer, got {raw!r}")
    value = int(raw)
    if minimum is not None and value < minimum:
        raise call.bad_request(f"{name} must be at least {minimum}, got {value}")
    return value


def page_params(call: Call) -> tuple[int, int]:
    """The page asked for and its size. The spec names it page-size: page_size (as some
    integrators write it) is ignored, as the real API does (it answered 10 results a page to
    page_size=100); larger pages are clamped, as Django REST framework's max_page_size does."""
    page = query_int(call, "page", minimum=1) or 1
    size = min(query_int(call, "page-size", minimum=1) or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    return page, size


def paged(call: Call, items: Sequence[Any], page: int, size: int,
          shown: Callable[[Any], Any]) -> Reply:
    """One page of ``items`` in the spec's paginated shape (count, next, previous, results)."""
    count = len(items)
    start = (page - 1) * size
    last_page = max(1, math.ceil(count / size))

    def link(number: int) -> str:
        params = {**call.query, "page": str(number)}
        host = call.headers.get("host", "127.0.0.1")
        return f"http://{host}{call.path}?{urlencode(params)}"

    return Reply(200, {
        "count": count,
        "next": link(page + 1) if start + size < count else None,
        "previous": link(min(page - 1, last_page)) if page > 1 else None,
        "results": [shown(item) for item in items[start:start + size]],
    })


def known_secret(presented: str, secrets: Iterable[str]) -> str | None:
    """The secret (token, API key) ``presented`` is, compared in constant time, else None."""
    for secret in secrets:
        if hmac.compare_digest(presented.encode(), secret.encode()):
            return secret
    return None


def take_slot(calls: deque[float], now: float, seconds: float, limit: int) -> bool:
    """A sliding-window limit: forget the calls older than ``seconds``, then admit this one
    (recorded in ``calls``) unless ``limit`` calls are already in the window."""
    while calls and calls[0] <= now - seconds:
        calls.popleft()
    if len(calls) >= limit:
        return False
    calls.append(now)
    return True


# --- routing ---------------------------------------------------------------------------------

RouteHandler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: RouteHandler
    string_errors: bool = False
    admin: bool = False


class Router:
    """Routes tried in the order they were added; a path served under another method only
    is answered 405 with ``Allow``, an unknown one 404."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: RouteHandler, *,
            string_errors: bool = False, admin: bool = False) -> None:
        self._routes.append(
            Route(method.upper(), re.compile(pattern), handler, string_errors, admin))

    def route(self, call: Call, *, admin: bool,
              prepare: Callable[[Call], None] | None = None) -> Reply:
        """The matching handler's reply; ``prepare`` runs first (its HttpError answers)."""
        allowed: list[str] = []
        for route in self._routes:
            if route.admin != admin:
                continue
            match = route.pattern.fullmatch(call.path)
            if match is None:
                continue
            if route.method != call.method:
                allowed.append(route.method)
                continue
            call.params = {k: v for k, v in match.groupdict().items() if v is not None}
            call.string_errors = route.string_errors
            try:
                if prepare is not None:
                    prepare(call)
                return route.handler(call)
            except HttpError as exc:
                return exc.reply
        if allowed:
            reply = error_v1(405, "method_not_allowed", f"Method {call.method} not allowed")
            reply.headers["Allow"] = ", ".join(sorted(set(allowed)))
            return reply
        return error_v1(404, "not_found", f"No endpoint at {call.path}")


# --- rendering and the log -------------------------------------------------------------------


def render(reply: Reply, request_id: str, delay: float) -> Response:
    """The bytes of a reply: HTML as given, JSON with the request id added to error bodies."""
    headers = {"X-Request-Id": request_id, **reply.headers}
    if reply.text is not None:
        headers.setdefault("Content-Type", "text/html; charset=UTF-8")
        return Response(reply.status, headers, reply.text.encode("utf-8"), delay)
    data = reply.data
    if isinstance(data, dict) and ("error" in data or "errors" in data):
        data = {**data, "requestId": request_id}
    headers["Content-Type"] = "application/json"
    return Response(reply.status, headers, json.dumps(data).encode("utf-8"), delay)


def exchange(call: Call, reply: Reply | None, response: Response, dropped: str | None,
             at: float) -> Exchange:
    """The log entry of a handled call (without its Authorization header)."""
    headers = {k: v for k, v in call.headers.items() if k != "authorization"}
    sent = reply is not None and dropped is None
    return Exchange(
        method=call.method,
        path=call.path,
        query=call.query,
        headers=headers,
        request=_decode(call.body),
        status=response.status if sent else None,
        response=_decode(response.body) if sent else None,
        response_headers=dict(response.headers) if sent else {},
        request_id=call.request_id,
        dropped=dropped,
        fault=call.fault,
        at=at,
        ignored=call.ignored,
    )


def _decode(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace")


# --- the loopback server ---------------------------------------------------------------------


class Handles(Protocol):
    """What a loopback server serves: one HTTP request in, what to answer out."""

    def handle(self, method: str, target: str, headers: Mapping[str, str],
               body: bytes = b"") -> Response: ...


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: Handles) -> None:
        self.app = app
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is what a server sees
        every day: not worth a traceback on stderr. Anything else still prints one."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Back Market's servers
    server_version = "BackMarketEmulator/1.0"
    timeout = 60  # idle keep-alive connections are closed
    # Headers and body are written apart: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK stall every response by about 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the emulators' exchange logs keep what happened."""

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        app = cast(_HTTPServer, self.server).app
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        response = app.handle(self.command, self.path, dict(self.headers.items()), body)
        if response.delay > 0:
            time.sleep(response.delay)
        if response.drop:
            self.close_connection = True  # nothing was written: the client sees the line close
            return
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client gave up (e.g. a timeout on a slow answer)


class LoopbackServer:
    """``app`` behind a real HTTP server, serving from a daemon thread (port 0: any free)."""

    def __init__(self, app: Handles, host: str, port: int, name: str) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.name = name
        self.base_url = ""
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._httpd is not None:
            return
        self._httpd = _HTTPServer((self.host, self.port), self.app)
        host, port = cast(tuple[str, int], self._httpd.server_address)[:2]
        self.port = port
        self.base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.name,
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
