"""Client-side limits: stay under Back Market's request rate instead of hitting its 429s."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

from syncer.state import StateStore, utcnow


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


class ApiLimits:
    """Back Market's traffic limits as the client keeps them: every request under the
    general limit, and requests on catalog routes under their own, lower one too."""

    def __init__(self, general: RateLimiter, catalog: RateLimiter | None = None,
                 catalog_routes: tuple[str, ...] = ()) -> None:
        self.general = general
        self.catalog = catalog
        self.catalog_routes = tuple(_route(r) for r in catalog_routes)

    def is_catalog(self, method: str, path: str) -> bool:
        for route_method, route_path, prefix in self.catalog_routes:
            if method == route_method and (path.startswith(route_path) if prefix
                                           else path == route_path):
                return True
        return False

    def acquire(self, method: str, path: str) -> None:
        if self.catalog is not None and self.is_catalog(method, path):
            self.catalog.acquire()
        self.general.acquire()

    def block(self, seconds: float) -> None:
        self.general.block(seconds)
        if self.catalog is not None:
            self.catalog.block(seconds)

    def history(self, wall_now: float) -> dict[str, list[float]]:
        return {"general": self.general.history(wall_now),
                "catalog": self.catalog.history(wall_now) if self.catalog else []}

    def seed(self, history: dict[str, list[float]], wall_now: float) -> None:
        self.general.seed(history.get("general", []), wall_now)
        if self.catalog is not None:
            self.catalog.seed(history.get("catalog", []), wall_now)


def _route(text: str) -> tuple[str, str, bool]:
    method, _, path = text.strip().partition(" ")
    if not path.startswith("/"):
        raise ValueError(f"a route is 'METHOD /path' (a trailing * matches a prefix): {text!r}")
    return method.upper(), path.rstrip("*"), path.endswith("*")


class SkuBudget:
    """The hourly budget of SKU lines on listing updates of one account, kept in the state
    database so that consecutive runs, and the stores of one account, share it."""

    def __init__(self, state: StateStore, account: str, lines_per_hour: int,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.state = state
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
        return self.state.spend_budget(self.account, lines, self.lines_per_hour, self.now())

    def refund(self, lines: int) -> None:
        if not self.unlimited:
            self.state.refund_budget(self.account, lines, self.now())

    def used(self) -> int:
        return self.state.budget_used(self.account, self.now())
