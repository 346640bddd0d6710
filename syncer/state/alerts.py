"""What each alert channel was told about each problem (``syncer.alerts.events`` decides).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from syncer.core.secrets import scrub
from syncer.state.database import Database, upsert
from syncer.state.schema import ALERTS, utcnow


class AlertStore:
    """The alert state of each store (``state.alerts``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def rows(self, store: str) -> list[dict[str, Any]]:
        if self.db.empty:
            return []
        with self.db.read() as conn:
            return [{**row._asdict(), "counts": json.loads(row.counts or "{}")}
                    for row in conn.execute(select(ALERTS).where(ALERTS.c.store == store)
                                            .order_by(ALERTS.c.kind, ALERTS.c.subject))]

    def save_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace whole rows of the alert state (messages scrubbed again)."""
        if not rows:
            return
        now = utcnow()
        records = [{**row, "message": scrub(row["message"]),
                    "last_error": row.get("last_error") and scrub(row["last_error"]),
                    "counts": json.dumps(row.get("counts") or {}, sort_keys=True),
                    "updated_at": now} for row in rows]
        keys = ("store", "kind", "subject", "channel")
        with self.db.write() as conn:
            upsert(conn, ALERTS, records, keys,
                    [c.name for c in ALERTS.columns if c.name not in keys])
