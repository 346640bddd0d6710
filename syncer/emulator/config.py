"""How an emulator is set up (``EmulatorConfig``) and the failures it injects (``Faults``),
with the platforms' vocabulary both read: markets, currencies, grades.

Where production integrations saw Back Market do more than the spec says, a switch does it:
``Faults.reuse_listings`` (a new SKU for a product and grade the seller already has a listing
of goes onto that listing, which keeps its old SKU) and ``Faults.resolve_products`` (a product
of a model family, see ``add_product(family=)``, is resolved to the family's first product).
``EmulatorConfig(realistic=True)`` (``syncer emulator --realistic``) turns both on and keys
task results by row: the profile to rehearse against what sellers' integrations really see.

The vocabulary comes from ``syncer.core.vocabulary``, which holds only Back Market's own
fixed lists as its published spec defines them (no engine code); the emulator imports
nothing else of syncer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final

from syncer.core.vocabulary import GRADE_STATE, LOCALES, market_currency

__all__ = ["DEFAULT_CURRENCY", "GRADES", "PLATFORMS", "RESULT_KEYS", "UNREPORTED",
           "EmulatorConfig", "Faults", "copy_faults"]

# Markets (Accept-Language values) of each platform and the currency of each market.
PLATFORMS: Final[dict[str, dict[str, str]]] = {
    platform: {locale: market_currency(locale) for locale in locales}
    for platform, locales in LOCALES.items()
}
# The spec: "Defaults to EUR for the EU marketplace, USD for the US one". AP has no default.
DEFAULT_CURRENCY: Final[dict[str, str]] = {"EU": "EUR", "US": "USD"}
# grade -> the deprecated integer ``state`` (ListingStateValue)
GRADES: Final[dict[str, int]] = GRADE_STATE


@dataclass
class Faults:
    """Failures injected into Back Market requests (never into ``/_emulator/`` ones)."""

    share_429: float = 0.0  # share of requests answered 429 (ErrorResponseV1 body)
    share_5xx: float = 0.0  # share answered 500/502/503 (502 and some 503 with an HTML body)
    # Share processed, then answered 502/504 as a gateway does when it gives up on an origin
    # that carried on: the change was applied though the answer is an error.
    share_5xx_after: float = 0.0
    share_slow: float = 0.0  # share delayed by slow_seconds before answering
    slow_seconds: float = 2.0
    # Share of connections closed without a response: half before processing, half after the
    # change was applied (the client cannot know which).
    share_drop: float = 0.0
    share_reject: float = 0.0  # share of per-SKU rejections (batch rows and single updates)
    # SKU (case-insensitive) -> error message: always rejected
    reject_skus: dict[str, str] = field(default_factory=dict)
    # Set: a refused single-listing update is answered {"error": {"code": reject_code, ...}}
    # instead of the bare string the spec documents, as a gateway in front of Back Market
    # may answer (outside the spec: not for contract-checked tests). Codes have no length
    # the client may rely on.
    reject_code: str | None = None
    # SKUs (case-insensitive) always rejected by a message that echoes the request's
    # Authorization header, as a proxy or WAF page quoting headers does: the token comes back
    echo_auth_skus: list[str] = field(default_factory=list)
    # EAN -> reason: a product proposal for it is rejected by Back Market's review
    reject_eans: dict[str, str] = field(default_factory=dict)
    # SKU (case-insensitive) -> "applied" or "skipped": its batch rows are left out of the
    # task result, after being applied or without being applied (the result does not report
    # every row: the client must read what it does not say from the listings)
    unreported_skus: dict[str, str] = field(default_factory=dict)
    waf_block: bool = False  # every request gets a Cloudflare-like 403 HTML page with cf-ray
    # Back Market down: every request gets the same 503 page (an outage answers the same way
    # for its whole length, unlike share_5xx's mix of 500, 502 and 503)
    outage: bool = False
    fail_tasks: bool = False  # batch tasks end failed (action_status 8, last_action_error)
    # A batch row creating a SKU for a product and grade the seller already has a listing of
    # updates that listing instead, which keeps its old SKU (as production integrators report)
    reuse_listings: bool = False
    # A product of a model family (add_product(family=)) is resolved to the family's first
    # product: listings are created for that one
    resolve_products: bool = False
    seed: int | None = None


UNREPORTED: Final = ("applied", "skipped")  # what happens to a row left out of a task result
RESULT_KEYS: Final = ("sku", "row")


def copy_faults(faults: Faults) -> Faults:
    """Faults whose mappings can change without changing the configured ones."""
    return replace(faults, reject_skus=dict(faults.reject_skus),
                   echo_auth_skus=list(faults.echo_auth_skus),
                   reject_eans=dict(faults.reject_eans),
                   unreported_skus=dict(faults.unreported_skus))


@dataclass
class EmulatorConfig:
    # Accepted tokens; each one is a separate seller account (own listings, own tasks).
    tokens: tuple[str, ...] = ("emulator-token",)
    platform: str = "EU"  # "EU", "US" or "AP": selects the markets and their currencies
    task_delay: float = 0.2  # seconds before a batch task is processed
    requests_per_window: int = 200  # per token; beyond: 429, then blocked for block_seconds
    window_seconds: float = 10.0
    block_seconds: float = 10.0
    # Per token, SKU lines on listing updates in a sliding hour (a single update is 1 line, a
    # batch its data rows); 0 = unlimited.
    sku_lines_per_hour: int = 2000
    max_batch_lines: int = 15000
    warranty_min: int = 6  # the spec says 12 months, the marketplace guides say 6
    # Any well-formed EAN (valid check digit) or product UUID names a known product.
    auto_products: bool = True
    # Product proposals (a batch row with an unknown EAN and product columns, when
    # auto_products is off) stay pending this long before Back Market's team validates them.
    review_delay: float = 1.0
    faults: Faults = field(default_factory=Faults)
    state_path: str | None = None  # SQLite file keeping the model across restarts
    # A single-listing update with a field its request body in the spec lacks is answered
    # 400 instead of being ignored as the real API does (which accepted pub_state in
    # production): for our own tests, so that the client sending such a field is caught.
    # Ignored fields are listed in each exchange of the log either way (Exchange.ignored).
    strict_fields: bool = False
    # Injectable for tests: rate window, hourly budget and task delay all read this clock.
    clock: Callable[[], float] = field(default=time.monotonic)
    # What keys a task result's entries: "sku" or "row" (None: "row" if realistic, else "sku")
    result_key: str | None = None
    # Behave as production integrations observed: reuse_listings and resolve_products on,
    # task results keyed by row.
    realistic: bool = False

    def __post_init__(self) -> None:
        if self.result_key is None:
            self.result_key = "row" if self.realistic else "sku"
        if self.result_key not in RESULT_KEYS:
            raise ValueError(f"result_key must be one of {', '.join(RESULT_KEYS)}: "
                             f"{self.result_key!r}")
        if self.platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}: {self.platform!r}")
        if not self.tokens:
            raise ValueError("at least one token is needed")
