"""What `syncer status` and `syncer errors` read of the snapshot: offers per state, failures,
and the stores that have any.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, select

from syncer.core.secrets import scrub
from syncer.state.database import Database
from syncer.state.schema import SNAPSHOT


class StatusReport:
    """Read-only views of the snapshot for people (``state.status``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def counts(self, store: str) -> dict[str, int]:
        names = ("live", "zeroed", "failed", "never_confirmed")
        if self.db.empty:
            return dict.fromkeys(names, 0)
        c = SNAPSHOT.c
        confirmed = c.confirmed_at.is_not(None)
        conditions = (and_(confirmed, c.quantity > 0), and_(confirmed, c.quantity == 0),
                      c.status == "failed", c.confirmed_at.is_(None))
        query = select(*(func.coalesce(func.sum(case((cond, 1), else_=0)), 0)
                         for cond in conditions)).where(c.store == store)
        with self.db.read() as conn:
            row = conn.execute(query).one()
        return {name: int(value) for name, value in zip(names, row, strict=True)}

    def failures(self, store: str | None = None) -> list[dict[str, Any]]:
        if self.db.empty:
            return []
        query = select(SNAPSHOT.c.store, SNAPSHOT.c.sku, SNAPSHOT.c.last_error,
                       SNAPSHOT.c.error_code, SNAPSHOT.c.request_id, SNAPSHOT.c.attempts,
                       SNAPSHOT.c.updated_at, SNAPSHOT.c.confirmed_at).where(
            SNAPSHOT.c.status == "failed").order_by(SNAPSHOT.c.store, SNAPSHOT.c.sku_key)
        if store is not None:
            query = query.where(SNAPSHOT.c.store == store)
        with self.db.read() as conn:  # scrubbed again: rows written before the scrubbing
            return [{**row._asdict(), "last_error": row.last_error and scrub(row.last_error),
                     "error_code": row.error_code and scrub(row.error_code)}
                    for row in conn.execute(query)]

    def stores(self) -> list[str]:
        if self.db.empty:
            return []
        with self.db.read() as conn:
            return [r[0] for r in conn.execute(
                select(SNAPSHOT.c.store).distinct().order_by(SNAPSHOT.c.store))]
