"""What Back Market's limits leave to each account, kept across runs: the hourly budget of
SKU lines and the pace of the last requests.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import delete as sa_delete
from sqlalchemy import func, select, text

from syncer.state.database import Database, upsert
from syncer.state.schema import LEDGER, PACE, aware, utcnow


class BudgetLedger:
    """The hourly budget of SKU lines on listing updates, per account: a sliding sum of
    what was spent (``state.budget``; ``syncer.backmarket.limits.SkuBudget`` draws on it)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def used(self, account: str, now: datetime | None = None) -> int:
        if self.db.empty:
            return 0
        since = (now or utcnow()) - timedelta(hours=1)
        with self.db.read() as conn:
            return int(conn.execute(select(func.coalesce(func.sum(LEDGER.c.lines), 0)).where(
                LEDGER.c.account == account, LEDGER.c.spent_at > since)).scalar() or 0)

    def spent(self, account: str, now: datetime | None = None) -> list[tuple[datetime, int]]:
        """(spent_at, lines) of the account's hourly budget still counted at ``now``, oldest
        first: when each frees (an hour after it was spent)."""
        if self.db.empty:
            return []
        since = (now or utcnow()) - timedelta(hours=1)
        with self.db.read() as conn:
            rows = conn.execute(select(LEDGER.c.spent_at, LEDGER.c.lines).where(
                LEDGER.c.account == account, LEDGER.c.spent_at > since)
                .order_by(LEDGER.c.spent_at))
            return [(aware(at), int(lines)) for at, lines in rows]

    def spend(self, account: str, lines: int, limit: int,
              now: datetime | None = None) -> int:
        """Take up to ``lines`` from the account's hourly budget; returns what was granted.
        Check and spend are one transaction (PostgreSQL: under an advisory lock), so runs of
        several stores of one account never overspend together."""
        now = now or utcnow()
        since = now - timedelta(hours=1)
        with self.db.write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:account))"),
                             {"account": account})
            used = int(conn.execute(select(func.coalesce(func.sum(LEDGER.c.lines), 0)).where(
                LEDGER.c.account == account, LEDGER.c.spent_at > since)).scalar() or 0)
            granted = max(0, min(lines, limit - used))
            if granted:
                conn.execute(LEDGER.insert().values(account=account, spent_at=now,
                                                     lines=granted))
            conn.execute(sa_delete(LEDGER).where(
                LEDGER.c.account == account, LEDGER.c.spent_at < now - timedelta(hours=2)))
        return granted

    def refund(self, account: str, lines: int, now: datetime | None = None) -> None:
        """Give back lines taken for requests that Back Market refused before processing."""
        if lines > 0:
            with self.db.write() as conn:
                conn.execute(LEDGER.insert().values(account=account,
                                                     spent_at=now or utcnow(), lines=-lines))


class RequestPace:
    """When each account's last requests were sent (``state.pace``), so that the next run
    starts within the per-10-seconds limit instead of bursting over it."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def load(self, account: str) -> dict[str, list[float]]:
        if self.db.empty:
            return {}
        with self.db.read() as conn:
            found = conn.execute(select(PACE.c.sent).where(PACE.c.account == account)).scalar()
        if not found:
            return {}
        return {name: [float(t) for t in times] for name, times in json.loads(found).items()}

    def save(self, account: str, sent: dict[str, list[float]]) -> None:
        with self.db.write() as conn:
            upsert(conn, PACE, [{"account": account, "sent": json.dumps(sent),
                                   "updated_at": utcnow()}], ("account",),
                    ["sent", "updated_at"])
