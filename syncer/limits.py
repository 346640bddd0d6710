"""Client-side limits: stay under Back Market's request rate instead of hitting its 429s."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


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
        self.waited = 0.0

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
            self.waited += wait
            self.sleep(max(wait, 0.001))

    def block(self, seconds: float) -> None:
        """After a 429: no call for ``seconds`` (the server's block), counted from now."""
        with self._lock:
            now = self.clock()
            self._sent.clear()
            self._sent.extend([now + seconds - self.window] * self.requests)
