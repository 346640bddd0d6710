"""Client-side limits: stay under Back Market's request rate instead of hitting its 429s."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Final, Protocol


class RateLimiter:
    """At most ``requests`` calls in any sliding window of ``window`` seconds.

    ``acquire`` blocks (through the injected ``sleep``) until a call is allowed, so tests
    can drive it with a fake clock and no real waiting.
    """

    def __init__(self, requests: int, window: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if requests <= 0 or window <= 0:
            raise ValueError("a rate limit needs a positive request count and window")
        self.requests = requests
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self.clock()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                if len(self._sent) < self.requests:
                    self._sent.append(now)
                    return
                wait = self._sent[0] + self.window - now
            self.sleep(max(wait, 0.001))

    def block(self, seconds: float) -> None:
        """After a 429: no call for ``seconds`` (the server's block), counted from now."""
        with self._lock:
            now = self.clock()
            self._sent.clear()
            self._sent.extend([now + seconds - self.window] * self.requests)

    def history(self, wall_now: float) -> list[float]:
        """The calls of the current window, as wall-clock times (to hand to the next run)."""
        with self._lock:
            now = self.clock()
            return [wall_now - (now - t) for t in self._sent if t > now - self.window]

    def seed(self, wall_times: list[float], wall_now: float) -> None:
        """Count an earlier run's recent calls as if this limiter had made them."""
        with self._lock:
            now = self.clock()
            recent = sorted(now - (wall_now - t) for t in wall_times)
            self._sent.extend(t for t in recent if t > now - self.window)


# Routes under the BackBox limit: "METHOD /path", a trailing * matches a prefix.
BACKBOX_ROUTES: Final = ("GET /ws/backbox/*",)


class ApiLimits:
    """Back Market's traffic limits as the client keeps them: every request under the
    general limit, and requests on catalog routes under their own, lower one too.

    The BackBox competitors endpoint has its own limit (2 calls a second per token, the
    spec's words on that operation) on top of the general one: the spec's "Traffic
    limitation" (about 200 requests in 10 s) is Cloudflare's and counts every request of a
    client, whatever its endpoint, so a competitors read spends from both."""

    def __init__(self, general: RateLimiter, catalog: RateLimiter | None = None,
                 catalog_routes: tuple[str, ...] = (), *,
                 backbox: RateLimiter | None = None,
                 backbox_routes: tuple[str, ...] = BACKBOX_ROUTES) -> None:
        self.general = general
        self.catalog = catalog
        self.catalog_routes = tuple(_route(r) for r in catalog_routes)
        self.backbox = backbox
        self.backbox_routes = tuple(_route(r) for r in backbox_routes)

    def is_catalog(self, method: str, path: str) -> bool:
        return _matches(self.catalog_routes, method, path)

    def is_backbox(self, method: str, path: str) -> bool:
        return _matches(self.backbox_routes, method, path)

    def acquire(self, method: str, path: str) -> None:
        if self.catalog is not None and self.is_catalog(method, path):
            self.catalog.acquire()
        if self.backbox is not None and self.is_backbox(method, path):
            self.backbox.acquire()
        self.general.acquire()

    def _limiters(self) -> dict[str, RateLimiter | None]:
        return {"general": self.general, "catalog": self.catalog, "backbox": self.backbox}

    def block(self, seconds: float) -> None:
        for limiter in self._limiters().values():
            if limiter is not None:
                limiter.block(seconds)

    def history(self, wall_now: float) -> dict[str, list[float]]:
        return {name: limiter.history(wall_now) if limiter else []
                for name, limiter in self._limiters().items()}

    def seed(self, history: dict[str, list[float]], wall_now: float) -> None:
        for name, limiter in self._limiters().items():
            if limiter is not None:
                limiter.seed(history.get(name, []), wall_now)


def _matches(routes: tuple[tuple[str, str, bool], ...], method: str, path: str) -> bool:
    for route_method, route_path, prefix in routes:
        if method == route_method and (path.startswith(route_path) if prefix
                                       else path == route_path):
            return True
    return False


def _route(text: str) -> tuple[str, str, bool]:
    method, _, path = text.strip().partition(" ")
    if not path.startswith("/"):
        raise ValueError(f"a route is 'METHOD /path' (a trailing * matches a prefix): {text!r}")
    return method.upper(), path.rstrip("*"), path.endswith("*")


_UTC_NOW: Final = partial(datetime.now, UTC)


class Ledger(Protocol):
    """Where the budget is kept (``syncer.state.limits.BudgetLedger``, ``state.budget``)."""

    def used(self, account: str, now: datetime | None = None) -> int: ...

    def spend(self, account: str, lines: int, limit: int,
              now: datetime | None = None) -> int: ...

    def refund(self, account: str, lines: int, now: datetime | None = None) -> None: ...


class SkuBudget:
    """The hourly budget of SKU lines on listing updates of one account, kept in the state
    database so that consecutive runs, and the stores of one account, share it."""

    def __init__(self, ledger: Ledger, account: str, lines_per_hour: int,
                 now: Callable[[], datetime] = _UTC_NOW) -> None:
        self.ledger = ledger
        self.account = account
        self.lines_per_hour = lines_per_hour
        self.now = now

    @property
    def unlimited(self) -> bool:
        return self.lines_per_hour <= 0

    def take(self, lines: int) -> int:
        """Lines granted, at most ``lines``; 0 when the hour's budget is used up."""
        if self.unlimited:
            return lines
        return self.ledger.spend(self.account, lines, self.lines_per_hour, self.now())

    def refund(self, lines: int) -> None:
        if not self.unlimited:
            self.ledger.refund(self.account, lines, self.now())

    def used(self) -> int:
        return self.ledger.used(self.account, self.now())
