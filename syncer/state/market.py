"""What the market passes read and spend (issue 15): BackBox competition per listing and
market, the public-shop scraper's monthly credits and its product views.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import select, text

from syncer.core.competition import Competition
from syncer.state.database import BULK, Database, upsert
from syncer.state.schema import (
    COMPETITION,
    PRICE_MOVES,
    SHOP_CREDITS,
    SHOP_VIEWS,
    SNAPSHOT,
    aware,
)


class MarketStore:
    """Competition reads, shop credits and shop views (``state.market``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save_competition(self, account: str, items: Sequence[Competition]) -> None:
        """What BackBox reads said; a read replaces an older one of its listing x market."""
        if not items:
            return
        rows = [{"account": account, "listing_id": c.listing_id, "market": c.market,
                 "currency": c.currency, "price": f"{c.price:f}",
                 "min_price": None if c.min_price is None else f"{c.min_price:f}",
                 "price_to_win": f"{c.price_to_win:f}",
                 "winner_price": None if c.winner_price is None else f"{c.winner_price:f}",
                 "is_winning": int(c.is_winning), "read_at": c.read_at} for c in items]
        with self.db.write() as conn:
            for start in range(0, len(rows), BULK):
                upsert(conn, COMPETITION, rows[start:start + BULK],
                        ("account", "listing_id", "market"),
                        ["currency", "price", "min_price", "price_to_win", "winner_price",
                         "is_winning", "read_at"])
        self.db.saw_table(COMPETITION)

    def competition(self, account: str) -> dict[tuple[str, str], Competition]:
        """(listing id, market) -> what the BackBox said at its last read."""
        if not self.db.has_table(COMPETITION):
            return {}
        c = COMPETITION.c
        with self.db.read() as conn:
            rows = conn.execute(select(
                c.listing_id, c.market, c.currency, c.price, c.min_price, c.price_to_win,
                c.winner_price, c.is_winning, c.read_at).where(c.account == account))
            return {(row.listing_id, row.market): Competition(
                listing_id=row.listing_id, market=row.market, currency=row.currency,
                price=Decimal(row.price),
                min_price=None if row.min_price is None else Decimal(row.min_price),
                price_to_win=Decimal(row.price_to_win),
                winner_price=None if row.winner_price is None else Decimal(row.winner_price),
                is_winning=bool(row.is_winning), read_at=aware(row.read_at))
                for row in rows}

    def market_listings(self, store: str) -> list[tuple[str, str, int, str | None,
                                                        str | None, datetime]]:
        """(sku, listing id, quantity, price, currency, confirmed_at) of every confirmed
        offer of the store whose listing is known: what a market pass may read."""
        if self.db.empty:
            return []
        c = SNAPSHOT.c
        with self.db.read() as conn:
            rows = conn.execute(select(
                c.sku, c.listing_id, c.quantity, c.price, c.currency, c.confirmed_at).where(
                c.store == store, c.listing_id.is_not(None), c.confirmed_at.is_not(None))
                .order_by(c.sku_key))
            return [(sku, listing_id, int(quantity or 0), price, currency, aware(at))
                    for sku, listing_id, quantity, price, currency, at in rows]

    def shop_credits_spent(self, shop: str, month: str) -> int:
        if not self.db.has_table(SHOP_CREDITS):
            return 0
        with self.db.read() as conn:
            return int(conn.execute(select(SHOP_CREDITS.c.spent).where(
                SHOP_CREDITS.c.shop == shop, SHOP_CREDITS.c.month == month)).scalar() or 0)

    def spend_shop_credits(self, shop: str, month: str, credits: int, cap: int) -> int:
        """Take up to ``credits`` from the month's allowance of ``cap``; returns what was
        granted (check and spend in one transaction, as the hourly SKU budget)."""
        with self.db.write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:shop))"),
                             {"shop": shop})
            c = SHOP_CREDITS.c
            spent = int(conn.execute(select(c.spent).where(
                c.shop == shop, c.month == month)).scalar() or 0)
            granted = max(0, min(credits, cap - spent))
            if granted:
                upsert(conn, SHOP_CREDITS, [{"shop": shop, "month": month,
                                               "spent": spent + granted}],
                        ("shop", "month"), ["spent"])
        return granted

    def save_shop_view(self, shop: str, product: str, data: dict[str, Any],
                       read_at: datetime) -> None:
        with self.db.write() as conn:
            upsert(conn, SHOP_VIEWS, [{"shop": shop, "product": product,
                                         "data": json.dumps(data, sort_keys=True),
                                         "read_at": read_at}],
                    ("shop", "product"), ["data", "read_at"])

    def shop_view(self, shop: str, product: str) -> tuple[dict[str, Any], datetime] | None:
        if not self.db.has_table(SHOP_VIEWS):
            return None
        with self.db.read() as conn:
            row = conn.execute(select(SHOP_VIEWS.c.data, SHOP_VIEWS.c.read_at).where(
                SHOP_VIEWS.c.shop == shop, SHOP_VIEWS.c.product == product)).first()
        return None if row is None else (dict(json.loads(row.data)), aware(row.read_at))

    # -- confirmed price moves (issue 15, part 4) --
    def record_price_moves(self, store: str,
                           moves: Sequence[tuple[str, Decimal, Decimal]], at: datetime,
                           keep: timedelta = timedelta(days=30)) -> None:
        """(SKU key, old price, new price) confirmed by Back Market at ``at``; moves older
        than ``keep`` are dropped (pricing counts a day, and a cooldown)."""
        if not moves:
            return
        rows = {key: {"store": store, "sku_key": key, "moved_at": at,
                      "old_price": f"{old:f}", "new_price": f"{new:f}"}
                for key, old, new in moves}  # one move per SKU and instant
        c = PRICE_MOVES.c
        with self.db.write() as conn:
            found = list(rows.values())
            for start in range(0, len(found), BULK):
                upsert(conn, PRICE_MOVES, found[start:start + BULK],
                       ("store", "sku_key", "moved_at"), ["old_price", "new_price"])
            conn.execute(sa_delete(PRICE_MOVES).where(c.store == store,
                                                       c.moved_at < at - keep))
        self.db.saw_table(PRICE_MOVES)

    def price_moves(self, store: str, since: datetime
                    ) -> dict[str, list[tuple[datetime, Decimal, Decimal]]]:
        """SKU key -> its confirmed moves (at, old, new) since ``since``, oldest first."""
        if not self.db.has_table(PRICE_MOVES):
            return {}
        c = PRICE_MOVES.c
        found: dict[str, list[tuple[datetime, Decimal, Decimal]]] = {}
        with self.db.read() as conn:
            for row in conn.execute(select(c.sku_key, c.moved_at, c.old_price, c.new_price)
                                    .where(c.store == store, c.moved_at >= since)
                                    .order_by(c.sku_key, c.moved_at)):
                found.setdefault(row.sku_key, []).append(
                    (aware(row.moved_at), Decimal(row.old_price), Decimal(row.new_price)))
        return found
