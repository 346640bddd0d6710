"""Products proposed to Back Market per store and EAN, and Back Market's category tree as
last read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from syncer.core.secrets import scrub
from syncer.state.database import Database, upsert
from syncer.state.schema import CATEGORIES, PROPOSALS, utcnow


class ProductStore:
    """Proposals and the category cache (``state.products``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def proposals(self, store: str) -> dict[str, dict[str, Any]]:
        """EAN -> the store's proposal record (sku, content_hash, status, reason...)."""
        if self.db.empty:
            return {}
        with self.db.read() as conn:
            rows = conn.execute(select(PROPOSALS).where(PROPOSALS.c.store == store))
            return {row.ean: row._asdict() for row in rows}

    def record_proposals(self, store: str, records: Sequence[dict[str, Any]]) -> None:
        """Upsert proposal records: ean, sku, content_hash, status, reason, product_id."""
        if not records:
            return
        now = utcnow()
        rows = [{"store": store, "reason": None, "product_id": None, **r, "updated_at": now}
                for r in records]
        for row in rows:  # a reason is Back Market's text: it may echo a secret
            row["reason"] = row["reason"] and scrub(row["reason"])
        with self.db.write() as conn:
            upsert(conn, PROPOSALS, rows, ("store", "ean"),
                    ["sku", "content_hash", "status", "reason", "product_id", "updated_at"])

    def rejected_products(self, store: str | None = None) -> list[dict[str, Any]]:
        if self.db.empty:
            return []
        query = select(PROPOSALS).where(PROPOSALS.c.status == "rejected").order_by(
            PROPOSALS.c.store, PROPOSALS.c.ean)
        if store is not None:
            query = query.where(PROPOSALS.c.store == store)
        with self.db.read() as conn:
            return [row._asdict() for row in conn.execute(query)]

    def category_tree(self, account: str) -> list[dict[str, Any]] | None:
        if self.db.empty:
            return None
        with self.db.read() as conn:
            found = conn.execute(select(CATEGORIES.c.tree).where(
                CATEGORIES.c.account == account)).scalar()
        return None if found is None else list(json.loads(found))

    def save_category_tree(self, account: str, tree: list[dict[str, Any]]) -> None:
        with self.db.write() as conn:
            upsert(conn, CATEGORIES, [{"account": account, "tree": json.dumps(tree),
                                         "fetched_at": utcnow()}], ("account",),
                    ["tree", "fetched_at"])
