"""Batch POSTs in flight: written before sending, so that their outcome is checked, never
guessed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import select
from sqlalchemy import update as sa_update

from syncer.state.database import Database
from syncer.state.schema import BATCHES, aware, utcnow


class BatchStore:
    """The pending batches of each store (``state.batches``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, store: str, offers: dict[str, list[Any]]) -> int:
        with self.db.write() as conn:
            result = conn.execute(BATCHES.insert().values(
                store=store, offers=json.dumps(offers), created_at=utcnow()))
            return int(result.inserted_primary_key[0])

    def set_task(self, batch_id: int, task_id: int) -> None:
        with self.db.write() as conn:
            conn.execute(sa_update(BATCHES).where(BATCHES.c.id == batch_id)
                         .values(task_id=task_id))

    def sent_at(self, batch_id: int) -> datetime | None:
        """When the batch was written, just before its POST (None: no such batch)."""
        with self.db.read() as conn:
            found = conn.execute(select(BATCHES.c.created_at).where(
                BATCHES.c.id == batch_id)).scalar()
        return None if found is None else aware(found)

    def pending(self, store: str) -> list[tuple[int, int | None, dict[str, list[Any]]]]:
        if self.db.empty:
            return []
        with self.db.read() as conn:
            rows = conn.execute(select(BATCHES.c.id, BATCHES.c.task_id, BATCHES.c.offers)
                                .where(BATCHES.c.store == store).order_by(BATCHES.c.id))
            return [(int(i), t, json.loads(o)) for i, t, o in rows]

    def offers_in_flight(self, store: str) -> int:
        return sum(len(offers) for _, _, offers in self.pending(store))

    def remove(self, batch_id: int) -> None:
        with self.db.write() as conn:
            conn.execute(sa_delete(BATCHES).where(BATCHES.c.id == batch_id))
