"""What the state remembers of an offer, and what publishing tells it: pure values.

``SnapshotEntry`` is an offer as Back Market last confirmed it (and its last failure); an
``Ack`` is a confirmation, a ``Failure`` a refused or failed attempt. The state database
stores and reads them (``syncer.state``), planning compares against them and publishing
produces them: they live here, with the other shared values, so that the pure planning
stage never imports the I/O layer to name them.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncer.core.offers import FIELDS, QUANTITY, Published, content_hash
from syncer.core.secrets import scrub


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    sku: str
    listing_id: str | None
    published: Published | None  # None: never confirmed
    status: str
    last_error: str | None = None
    attempts: int = 0
    request_id: str | None = None
    source_hash: int | None = None
    failed_hash: str | None = None  # content hash of what failed last

    def quarantined(self, target: Published, after: int) -> bool:
        """Refused ``after`` runs in a row with the same error, for this very content. A
        target that takes a confirmed offer's quantity down (to 0 or lower) is never held
        back: stock that is gone must reach Back Market, or it sells what is not there."""
        if self.published is not None and \
                int(target[QUANTITY] or 0) < int(self.published[QUANTITY] or 0):
            return False
        return (after > 0 and self.status == "failed" and self.attempts >= after
                and self.failed_hash == content_hash(target))

    @property
    def live(self) -> bool:
        """Confirmed on Back Market with stock (a zeroed offer is not live)."""
        return self.published is not None and bool(self.published[FIELDS.index("quantity")])


@dataclass(frozen=True, slots=True)
class Ack:
    """Back Market confirmed these published fields for this SKU."""

    sku: str
    published: Published
    listing_id: str | None
    source_hash: int | None = None  # the catalog row it came from, when all of it was sent


@dataclass(frozen=True, slots=True)
class Failure:
    sku: str
    message: str
    code: str | None = None
    request_id: str | None = None
    attempted: Published | None = None
    # False: Back Market was not reached (connection, timeout, 5xx or 429 after retries).
    # Only an explicit refusal counts toward quarantine.
    refused: bool = True

    def __post_init__(self) -> None:
        # What Back Market said may echo a secret (invariant 9): scrubbed before it is
        # stored, printed or logged.
        object.__setattr__(self, "message", scrub(self.message))
        if self.code is not None:
            object.__setattr__(self, "code", scrub(self.code))
        if self.request_id is not None:
            object.__setattr__(self, "request_id", scrub(self.request_id))
