"""The run log: every run of a store, its kind, outcome and counts (status, scheduling and
alerts read it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy import update as sa_update

from syncer.core.secrets import scrub
from syncer.state.database import Database
from syncer.state.schema import RUNS, aware, utcnow

# A run that did its work counts for scheduling, even if Back Market refused some offers
# (those are retried by the next run anyway). "stopped", "failed", "interrupted" do not.
SUCCESSFUL_OUTCOMES: Final = ("ok", "partial")


class RunLog:
    """Runs as they start and finish (``state.runs``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def start(self, run_id: str, store: str, kind: str,
              at: datetime | None = None) -> int:
        with self.db.write() as conn:
            result = conn.execute(RUNS.insert().values(
                run_id=run_id, store=store, kind=kind, started_at=at or utcnow(),
                outcome="running", counts="{}"))
            return int(result.inserted_primary_key[0])

    def finish(self, record_id: int, outcome: str, counts: dict[str, int],
               message: str | None = None, at: datetime | None = None) -> None:
        with self.db.write() as conn:
            conn.execute(sa_update(RUNS).where(RUNS.c.id == record_id).values(
                finished_at=at or utcnow(), outcome=outcome,
                counts=json.dumps(counts, sort_keys=True),
                message=message and scrub(message)))

    def last_success(self, store: str, kinds: Sequence[str]) -> datetime | None:
        """When the last run of one of these kinds that completed its work started."""
        if self.db.empty:
            return None
        with self.db.read() as conn:
            found = conn.execute(select(func.max(RUNS.c.started_at)).where(
                RUNS.c.store == store, RUNS.c.kind.in_(list(kinds)),
                RUNS.c.outcome.in_(SUCCESSFUL_OUTCOMES))).scalar()
        return None if found is None else aware(found)

    def latest(self, store: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
        if self.db.empty:
            return []
        query = select(RUNS).order_by(RUNS.c.id.desc()).limit(limit)
        if store is not None:
            query = query.where(RUNS.c.store == store)
        with self.db.read() as conn:
            return [
                {**row._asdict(), "counts": json.loads(row.counts)}
                for row in conn.execute(query)
            ]

    def finished(self, store: str, kinds: Sequence[str], *, limit: int | None = None,
                 oldest_first: bool = False) -> list[dict[str, Any]]:
        """The store's finished runs of these kinds, newest first (or oldest first)."""
        if self.db.empty:
            return []
        order = RUNS.c.id.asc() if oldest_first else RUNS.c.id.desc()
        query = select(RUNS).where(RUNS.c.store == store, RUNS.c.kind.in_(list(kinds)),
                                    RUNS.c.outcome != "running").order_by(order).limit(limit)
        with self.db.read() as conn:
            return [{**row._asdict(), "counts": json.loads(row.counts or "{}")}
                    for row in conn.execute(query)]
