"""The queue of offer changes that did not fit a run (the hourly budget): they go first next run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import func, select

from syncer.core.offers import sku_key
from syncer.state.database import BULK, Database, upsert
from syncer.state.schema import QUEUE, aware, utcnow


class WorkQueue:
    """The queued offers of each store (``state.queue``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def queued(self, store: str) -> dict[str, tuple[str, str, datetime]]:
        """sku_key -> (sku, reason, queued_at) of the store's queued offers."""
        if self.db.empty:
            return {}
        with self.db.read() as conn:
            rows = conn.execute(select(QUEUE.c.sku_key, QUEUE.c.sku, QUEUE.c.reason,
                                       QUEUE.c.queued_at).where(QUEUE.c.store == store))
            return {key: (sku, reason, aware(at)) for key, sku, reason, at in rows}

    def enqueue(self, store: str, offers: Sequence[tuple[str, str] | tuple[str, str, int]]
                ) -> None:
        """Queue (sku, reason[, priority]) tuples; an offer already queued keeps its place in
        line."""
        if not offers:
            return
        now = utcnow()
        rows = [{"store": store, "sku_key": sku_key(offer[0]), "sku": offer[0],
                 "reason": offer[1], "queued_at": now,
                 "priority": offer[2] if len(offer) > 2 else None} for offer in offers]
        with self.db.write() as conn:
            for start in range(0, len(rows), BULK):
                upsert(conn, QUEUE, rows[start:start + BULK], ("store", "sku_key"),
                        ["reason", "priority"])

    def counts(self, store: str) -> dict[int | None, tuple[int, datetime]]:
        """Priority -> (offers queued, the oldest's queued_at) of the store's queue."""
        if self.db.empty:
            return {}
        with self.db.read() as conn:
            rows = conn.execute(
                select(QUEUE.c.priority, func.count(), func.min(QUEUE.c.queued_at))
                .where(QUEUE.c.store == store).group_by(QUEUE.c.priority))
            return {priority: (int(count), aware(oldest)) for priority, count, oldest in rows}

    def remove(self, store: str, skus: Sequence[str]) -> None:
        """Take offers out of the queue (nothing is left to send for them)."""
        if skus:
            with self.db.write() as conn:
                self.unqueue(conn, store, [sku_key(sku) for sku in skus])

    def unqueue(self, conn: Any, store: str, keys: Sequence[str]) -> None:
        """Take these keys out of the queue, in the caller's transaction (it sent them)."""
        for start in range(0, len(keys), BULK):
            conn.execute(sa_delete(QUEUE).where(
                QUEUE.c.store == store, QUEUE.c.sku_key.in_(keys[start:start + BULK])))
