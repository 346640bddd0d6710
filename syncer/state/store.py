"""The state database, opened once per command, with one small store per concern.

SQLite by default (a file under ``state/``), PostgreSQL in production, through SQLAlchemy
Core. ``plan`` opens the state read-only and never creates it (invariant 1); a publishing
command opens it for writing, which creates it or brings its schema to head.
"""

from __future__ import annotations

from sqlalchemy import Engine

from syncer.errors import StateError
from syncer.state import version
from syncer.state.alerts import AlertStore
from syncer.state.batches import BatchStore
from syncer.state.database import Database, make_engine, sqlite_path
from syncer.state.limits import BudgetLedger, RequestPace
from syncer.state.locks import Locks
from syncer.state.market import MarketStore
from syncer.state.offers import OfferStore
from syncer.state.orders import OrderStore
from syncer.state.products import ProductStore
from syncer.state.queue import WorkQueue
from syncer.state.runs import RunLog
from syncer.state.status import StatusReport


class StateStore:
    """Access to the state database. Open with ``StateStore.open(url)`` for a run that
    publishes, or ``StateStore.open_readonly(url)`` for plan, status and errors; then use
    its parts, which share one engine: ``state.offers.snapshot(store)``,
    ``state.orders.find_order(...)``, ``state.runs.start(...)``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.queue = WorkQueue(db)
        self.offers = OfferStore(db, self.queue)
        self.status = StatusReport(db)
        self.budget = BudgetLedger(db)
        self.pace = RequestPace(db)
        self.products = ProductStore(db)
        self.orders = OrderStore(db)
        self.batches = BatchStore(db)
        self.runs = RunLog(db)
        self.locks = Locks(db)
        self.alerts = AlertStore(db)
        self.market = MarketStore(db)

    @classmethod
    def open(cls, url: str) -> StateStore:
        path = sqlite_path(url)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(f"cannot create the folder of the state database "
                                 f"{path}: {exc.strerror}") from None
        db = Database(make_engine(url, readonly=False), url, readonly=False)
        try:
            version.ensure(db)
        except BaseException:
            db.close()
            raise
        return cls(db)

    @classmethod
    def open_readonly(cls, url: str) -> StateStore:
        path = sqlite_path(url)
        if path is not None and not path.exists():
            return cls(Database(None, url, readonly=True))  # nothing published; create nothing
        db = Database(make_engine(url, readonly=True), url, readonly=True)
        try:
            version.check(db)
        except BaseException:
            db.close()
            raise
        return cls(db)

    @property
    def engine(self) -> Engine | None:
        return self.db.engine

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
