"""What Back Market said about one of our listings in one market's BackBox, and when.

Plain values, no I/O: the market reader (client, state) makes them from
``GET /ws/backbox/v1/competitors/{listingId}`` (the spec's ``Competitor``, one per
listing x market), and pricing reads them to suggest a price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Competition:
    listing_id: str  # our listing, Back Market's public id (a UUID)
    market: str  # two-letter market code as Back Market sends it ("FR")
    currency: str  # of every amount below
    price: Decimal  # our price in that market, as Back Market holds it
    min_price: Decimal | None
    price_to_win: Decimal  # the price we would have to set to win the BackBox
    winner_price: Decimal | None  # the BackBox's price now (None: nobody holds it)
    is_winning: bool
    read_at: datetime  # aware, UTC: when we read it

    def age(self, now: datetime) -> timedelta:
        return now - self.read_at
