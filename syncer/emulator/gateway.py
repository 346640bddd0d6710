"""The emulator's front door, what a request meets before any endpoint: Cloudflare (its WAF,
an outage page, bot management's challenge to a request without a proper User-Agent, the
per-token traffic limit), the seller's authentication and market (``Accept-Language``), and
the faults injected into Back Market requests (never into ``/_emulator/`` ones).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Final

from syncer.emulator.http import Call, Reply, Router, error_v1, known_secret, take_slot
from syncer.emulator.model import Seller, Shared

__all__ = ["Gateway", "bot_challenge", "cloudflare_page", "waf_page"]

USER_AGENT: Final = re.compile(r"^BM-[^-;]+-[^;]+;[^@\s]+@[^@\s]+$")


class Gateway:
    """Dispatches one call: Cloudflare's answers, authentication, faults, then the routes."""

    def __init__(self, shared: Shared, router: Router,
                 run_due: Callable[[float], None]) -> None:
        self.shared = shared
        self.router = router
        self.run_due = run_due  # what is due at that time (batch tasks, product reviews)

    def dispatch(self, call: Call) -> tuple[Reply | None, float, str | None]:
        """The reply (None: drop the connection), the delay before it, where it was dropped."""
        shared = self.shared
        now = shared.clock()
        self.run_due(now)
        if call.path.startswith("/_emulator/"):
            return self.router.route(call, admin=True), 0.0, None
        faults = shared.faults
        if faults.waf_block:
            return waf_page(), 0.0, None
        if faults.outage:
            return cloudflare_page(503), 0.0, None
        if not USER_AGENT.match(call.headers.get("user-agent", "")):
            return bot_challenge(), 0.0, None
        token = self._authenticate(call)
        if token is None:
            return self._unauthenticated(call), 0.0, None
        call.token = token
        limited = self._admit(shared.seller(token), now)
        if limited is not None:
            return limited, 0.0, None
        delay = faults.slow_seconds if shared.draw(faults.share_slow) else 0.0
        dropped = None
        if shared.draw(faults.share_drop):
            dropped = "before" if shared.rng.random() < 0.5 else "after"
            if dropped == "before":
                return None, delay, dropped
        if shared.draw(faults.share_429):
            shared.stats["injected_429"] += 1
            call.fault = "429"
            reply = error_v1(429, "too_many_requests", "Too many requests (emulated fault)")
            return reply, delay, dropped
        if shared.draw(faults.share_5xx):
            call.fault = "5xx"
            return self._server_error(), delay, dropped
        reply = self.router.route(call, admin=False, prepare=self._set_locale)
        if dropped is None and shared.draw(faults.share_5xx_after):
            call.fault = "5xx-after"
            status = shared.rng.choice((502, 504))
            return cloudflare_page(status), delay, dropped
        return reply, delay, dropped

    def _authenticate(self, call: Call) -> str | None:
        scheme, _, presented = call.headers.get("authorization", "").partition(" ")
        presented = presented.strip()
        if scheme.lower() != "basic" or not presented:
            return None
        return known_secret(presented, self.shared.config.tokens)

    @staticmethod
    def _unauthenticated(call: Call) -> Reply:
        if "authorization" not in call.headers:
            message = "Authentication credentials were not provided."
        else:
            message = "Invalid token: expected 'Authorization: Basic <token>' with a seller token."
        return error_v1(401, "unauthenticated", message)

    def _set_locale(self, call: Call) -> None:
        markets = self.shared.markets
        raw = call.headers.get("accept-language")
        if raw is None or not raw.strip():
            call.locale = next(iter(markets))
            return
        if raw.strip() not in markets:
            raise call.bad_request(
                f"Accept-Language {raw!r} is not a market of the {self.shared.config.platform}"
                f" platform; expected one of: {' '.join(markets)}"
            )
        call.locale = raw.strip()

    def _admit(self, seller: Seller, now: float) -> Reply | None:
        """The per-token traffic limit (Cloudflare's, per the spec's "Traffic limitation")."""
        config, stats = self.shared.config, self.shared.stats
        if now < seller.blocked_until:
            stats["rate_limited"] += 1
            wait = seller.blocked_until - now
            message = f"Too many requests: blocked {wait:.1f}s more"
            return error_v1(429, "too_many_requests", message)
        window = config.window_seconds
        if take_slot(seller.requests, now, window, config.requests_per_window):
            return None
        stats["rate_limited"] += 1
        seller.blocked_until = now + config.block_seconds
        seller.requests.clear()
        return error_v1(
            429,
            "too_many_requests",
            f"Too many requests: more than {config.requests_per_window} in"
            f" {window:g}s; blocked for {config.block_seconds:g}s",
        )

    def _server_error(self) -> Reply:
        rng = self.shared.rng
        status = rng.choice((500, 502, 503))
        if status == 502 or (status == 503 and rng.random() < 0.5):
            return cloudflare_page(status)
        return error_v1(status, "server_error", f"Server error {status} (emulated fault)")


def _ray_id() -> str:
    return f"{uuid.uuid4().hex[:16]}-CDG"


def waf_page() -> Reply:
    """Cloudflare's WAF block: an HTML page, the ray id in the ``cf-ray`` header."""
    ray = _ray_id()
    page = (
        "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>"
        "<body><h1>Sorry, you have been blocked</h1>"
        "<h2>You are unable to access backmarket.fr</h2>"
        f"<p>Cloudflare Ray ID: <strong>{ray.split('-')[0]}</strong></p></body></html>"
    )
    headers = {
        "cf-ray": ray,
        "cache-control": "max-age=15",
        "referrer-policy": "same-origin",
        "x-frame-options": "SAMEORIGIN",
    }
    return Reply(403, text=page, headers=headers)


def bot_challenge() -> Reply:
    """Bot management's answer to a request without a proper User-Agent (from the spec)."""
    challenge = {
        "code": "bot-need-challenge",
        "message": "Forbidden",
        "challengePath": "/testchallengepage",
    }
    return Reply(403, {"errors": [challenge]}, headers={"cf-ray": _ray_id()})


def cloudflare_page(status: int) -> Reply:
    title = {502: "Bad gateway", 503: "Service unavailable",
             504: "Gateway time-out"}.get(status, "Error")
    ray = _ray_id()
    page = (
        f"<!DOCTYPE html><html><head><title>backmarket.fr | {status}: {title}</title></head>"
        f"<body><h1>{title}</h1><p>Error code {status}</p>"
        f"<p>Cloudflare Ray ID: <strong>{ray.split('-')[0]}</strong></p></body></html>"
    )
    return Reply(status, text=page, headers={"cf-ray": ray})
