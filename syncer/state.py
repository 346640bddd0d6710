"""The state database: snapshot of confirmed publications, run log, locks, batches in flight.

SQLite by default (a file under ``state/``), PostgreSQL in production, through SQLModel.
The snapshot moves only on a confirmed acknowledgement, offer by offer (invariant 2); a
failure is recorded beside the last confirmed values, never over them. ``plan`` opens the
state read-only and never creates it (invariant 1).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import structlog
from sqlalchemy import (
    BigInteger,
    Engine,
    Text,
    and_,
    case,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy import delete as sa_delete
from sqlalchemy import update as sa_update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlmodel import Column, Field, SQLModel

from syncer.config import lease_renew_every
from syncer.crashpoints import crashpoint
from syncer.errors import LockHeld, StateError
from syncer.offers import FIELDS, QUANTITY, Published, content_hash, sku_key
from syncer.secrets import scrub

log = structlog.get_logger("syncer.state")

SCHEMA_VERSION: Final = 3
# Schema version -> the statements that bring the previous version to it: one tuple for
# every database, or a tuple per dialect name (a dialect not named has nothing to do).
MIGRATIONS: Final[dict[int, tuple[str, ...] | dict[str, tuple[str, ...]]]] = {
    2: ("ALTER TABLE offer_snapshot ADD COLUMN source_hash BIGINT",),
    # What Back Market says (error codes, request ids) is kept in full: a code longer than
    # VARCHAR(64) stopped whole runs on PostgreSQL. SQLite does not enforce the length.
    3: {"postgresql": (
        "ALTER TABLE offer_snapshot ALTER COLUMN error_code TYPE TEXT",
        "ALTER TABLE offer_snapshot ALTER COLUMN request_id TYPE TEXT",
        "ALTER TABLE order_line_action ALTER COLUMN request_id TYPE TEXT",
    )},
}
# A run that did its work counts for scheduling, even if Back Market refused some offers
# (those are retried by the next run anyway). "stopped", "failed", "interrupted" do not.
SUCCESSFUL_OUTCOMES: Final = ("ok", "partial")
_BULK: Final = 2000
_ACK_CHUNK: Final = 10_000  # acknowledgements per transaction


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- tables ----------------------------------------------------------------------------------

class OfferSnapshot(SQLModel, table=True):
    """Per store and SKU: the fields Back Market last confirmed, and the last failure."""

    __tablename__ = "offer_snapshot"
    store: str = Field(primary_key=True, max_length=64)
    sku_key: str = Field(primary_key=True, max_length=128)
    sku: str = Field(max_length=128)
    listing_id: str | None = Field(default=None, max_length=64)
    # Confirmed published fields (all None until the first confirmation).
    product_id: str | None = Field(default=None, max_length=64)
    ean: str | None = Field(default=None, max_length=16)
    grade: str | None = Field(default=None, max_length=16)
    quantity: int | None = None
    price: str | None = Field(default=None, max_length=24)
    currency: str | None = Field(default=None, max_length=3)
    warranty_delay: int | None = None
    comment: str | None = Field(default=None, sa_column=Column(Text))
    min_price: str | None = Field(default=None, max_length=24)
    max_price: str | None = Field(default=None, max_length=24)
    deee: str | None = Field(default=None, max_length=24)
    shipping: str | None = Field(default=None, sa_column=Column(Text))
    content_hash: str | None = Field(default=None, max_length=16)
    # Hash of the catalog row (and mapping) the confirmed fields came from: a row with the same
    # hash next time is unchanged without being validated again. None: not known.
    source_hash: int | None = Field(default=None, sa_column=Column(BigInteger))
    # When the request Back Market confirmed was sent: a confirmation of an older request
    # never replaces it (a batch can settle after a newer real-time update).
    confirmed_at: datetime | None = None
    # "live" (confirmed as published) or "failed" (the last attempt failed).
    status: str = Field(default="live", max_length=16)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    # As Back Market sent them, whatever their length (schema version 3).
    error_code: str | None = Field(default=None, sa_column=Column(Text))
    request_id: str | None = Field(default=None, sa_column=Column(Text))
    attempts: int = 0  # consecutive failed attempts
    failed_hash: str | None = Field(default=None, max_length=16)
    updated_at: datetime = Field(default_factory=utcnow)


class StoreRevision(SQLModel, table=True):
    """Bumped on every snapshot change: a saved plan records it to detect staleness."""

    __tablename__ = "store_revision"
    store: str = Field(primary_key=True, max_length=64)
    revision: int = 0
    updated_at: datetime = Field(default_factory=utcnow)


class RunRecord(SQLModel, table=True):
    __tablename__ = "run_log"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, max_length=64)
    store: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=16)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    outcome: str = Field(default="running", max_length=16)
    counts: str = Field(default="{}", sa_column=Column(Text))
    message: str | None = Field(default=None, sa_column=Column(Text))


class StoreLock(SQLModel, table=True):
    __tablename__ = "store_lock"
    store: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=200)
    acquired_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class PendingBatch(SQLModel, table=True):
    """A batch POST in flight. Written before sending: its outcome is checked, never guessed."""

    __tablename__ = "pending_batch"
    id: int | None = Field(default=None, primary_key=True)
    store: str = Field(index=True, max_length=64)
    task_id: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # JSON: {sku_key: [sku, *published]} of every offer in the batch.
    offers: str = Field(sa_column=Column(Text))


class BudgetSpend(SQLModel, table=True):
    """SKU lines sent on listing updates, per account: the hourly budget is a sliding sum."""

    __tablename__ = "budget_ledger"
    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(index=True, max_length=300)
    spent_at: datetime = Field(index=True)
    lines: int


class QueuedOffer(SQLModel, table=True):
    """A change that did not fit this run (the hourly budget): it goes first next run."""

    __tablename__ = "offer_queue"
    store: str = Field(primary_key=True, max_length=64)
    sku_key: str = Field(primary_key=True, max_length=128)
    sku: str = Field(max_length=128)
    reason: str = Field(sa_column=Column(Text))
    queued_at: datetime


class ProductProposal(SQLModel, table=True):
    """A product proposed to Back Market, per store (its country's content) and EAN."""

    __tablename__ = "product_proposal"
    store: str = Field(primary_key=True, max_length=64)
    ean: str = Field(primary_key=True, max_length=16)
    sku: str = Field(max_length=128)
    content_hash: str = Field(max_length=16)
    # "proposed" (waiting for review), "live" (validated) or "rejected".
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    product_id: str | None = Field(default=None, max_length=64)
    updated_at: datetime = Field(default_factory=utcnow)


class CategoryCache(SQLModel, table=True):
    """Back Market's category tree as last read, so that plans can check attributes."""

    __tablename__ = "category_cache"
    account: str = Field(primary_key=True, max_length=300)
    tree: str = Field(sa_column=Column(Text))
    fetched_at: datetime = Field(default_factory=utcnow)


class RequestPace(SQLModel, table=True):
    """When an account's last requests were sent (wall clock), so that the next run starts
    within Back Market's per-10-seconds limit instead of bursting over it."""

    __tablename__ = "request_pace"
    account: str = Field(primary_key=True, max_length=300)
    sent: str = Field(sa_column=Column(Text))  # JSON list of epoch seconds
    updated_at: datetime = Field(default_factory=utcnow)


class OrderRecord(SQLModel, table=True):
    """An order as Back Market last showed it (a pull, or the answer to a change), per
    account (order ids are Back Market's, unique on one platform)."""

    __tablename__ = "order_record"
    account: str = Field(primary_key=True, max_length=300)
    order_id: int = Field(primary_key=True)
    store: str = Field(index=True, max_length=64)  # the store that first pulled it
    country_code: str = Field(max_length=8)
    state: int
    currency: str | None = Field(default=None, max_length=3)
    price: str | None = Field(default=None, max_length=24)
    shipping_price: str | None = Field(default=None, max_length=24)
    date_creation: datetime | None = None
    date_modification: datetime | None = None
    date_payment: datetime | None = None
    date_shipping: datetime | None = None
    tracking_number: str | None = Field(default=None, max_length=200)
    tracking_url: str | None = Field(default=None, sa_column=Column(Text))
    shipper: str | None = Field(default=None, max_length=200)
    content_hash: str = Field(max_length=16)  # of the order's canonical JSON
    data: str = Field(sa_column=Column(Text))  # the order's JSON as Back Market sent it
    pulled_at: datetime = Field(default_factory=utcnow)


class OrderLineRecord(SQLModel, table=True):
    __tablename__ = "order_line"
    account: str = Field(primary_key=True, max_length=300)
    orderline_id: int = Field(primary_key=True)
    order_id: int = Field(index=True)
    sku: str = Field(max_length=128)
    quantity: int
    price: str | None = Field(default=None, max_length=24)  # unit price
    shipping_price: str | None = Field(default=None, max_length=24)
    currency: str | None = Field(default=None, max_length=3)
    state: int
    product: str | None = Field(default=None, sa_column=Column(Text))
    imei: str | None = Field(default=None, max_length=15)
    serial_number: str | None = Field(default=None, max_length=50)


class OrderLineAction(SQLModel, table=True):
    """What the syncer did or decided about a paid line: accepted, cancelled, or held for
    the seller (with the reason), and whether Back Market confirmed it."""

    __tablename__ = "order_line_action"
    account: str = Field(primary_key=True, max_length=300)
    orderline_id: int = Field(primary_key=True)
    order_id: int = Field(index=True)
    sku: str = Field(max_length=128)
    action: str = Field(max_length=16)  # "accept", "cancel" or "hold"
    status: str = Field(max_length=16)  # "confirmed", "failed" or "held"
    reason: str | None = Field(default=None, sa_column=Column(Text))
    request_id: str | None = Field(default=None, sa_column=Column(Text))
    attempts: int = 0
    updated_at: datetime = Field(default_factory=utcnow)


class OrderShipment(SQLModel, table=True):
    """A shipment sent for an order. Once ``confirmed`` it is never sent again."""

    __tablename__ = "order_shipment"
    account: str = Field(primary_key=True, max_length=300)
    order_id: int = Field(primary_key=True)
    store: str = Field(max_length=64)
    carrier: str = Field(max_length=200)  # the seller's name for it
    shipper: str | None = Field(default=None, max_length=200)  # Back Market's value
    tracking_number: str = Field(max_length=200)
    tracking_url: str | None = Field(default=None, sa_column=Column(Text))
    imei: str | None = Field(default=None, max_length=15)
    serial_number: str | None = Field(default=None, max_length=50)
    status: str = Field(max_length=16)  # "confirmed" or "failed"
    error: str | None = Field(default=None, sa_column=Column(Text))
    request_id: str | None = Field(default=None, max_length=128)
    attempts: int = 0
    confirmed_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class OrderInvoice(SQLModel, table=True):
    """The seller's invoice sent for an order. Once ``confirmed`` it is never sent again."""

    __tablename__ = "order_invoice"
    account: str = Field(primary_key=True, max_length=300)
    order_id: int = Field(primary_key=True)
    store: str = Field(max_length=64)
    path: str = Field(sa_column=Column(Text))  # the file as the invoices file names it
    sha256: str | None = Field(default=None, max_length=64)  # of the file sent
    size: int | None = None
    status: str = Field(max_length=16)  # "confirmed" or "failed"
    error: str | None = Field(default=None, sa_column=Column(Text))
    request_id: str | None = Field(default=None, sa_column=Column(Text))
    attempts: int = 0
    confirmed_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class OrderLineIdentifier(SQLModel, table=True):
    """The IMEI and serial number registered on an order line after the shipment (PATCH
    /ws/orderlines/{id}): the confirmed values are never sent again."""

    __tablename__ = "order_line_identifier"
    account: str = Field(primary_key=True, max_length=300)
    orderline_id: int = Field(primary_key=True)
    order_id: int = Field(index=True)
    store: str = Field(max_length=64)
    sku: str = Field(max_length=128)
    imei: str | None = Field(default=None, max_length=15)  # confirmed values only
    serial_number: str | None = Field(default=None, max_length=50)
    status: str = Field(max_length=16)  # of the last attempt: "confirmed" or "failed"
    error: str | None = Field(default=None, sa_column=Column(Text))
    request_id: str | None = Field(default=None, sa_column=Column(Text))
    attempts: int = 0
    confirmed_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class OrderPull(SQLModel, table=True):
    """Per store and scope: the latest ``date_modification`` a successful pull has seen."""

    __tablename__ = "order_pull"
    store: str = Field(primary_key=True, max_length=64)
    scope: str = Field(primary_key=True, max_length=8)  # "store" or "all"
    watermark: datetime | None = None
    pulled_at: datetime = Field(default_factory=utcnow)


class SchemaInfo(SQLModel, table=True):
    __tablename__ = "schema_info"
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=200)


_SNAPSHOT = OfferSnapshot.__table__  # type: ignore[attr-defined]
_REVISION = StoreRevision.__table__  # type: ignore[attr-defined]
_RUNS = RunRecord.__table__  # type: ignore[attr-defined]
_LOCKS = StoreLock.__table__  # type: ignore[attr-defined]
_BATCHES = PendingBatch.__table__  # type: ignore[attr-defined]
_SCHEMA = SchemaInfo.__table__  # type: ignore[attr-defined]
_LEDGER = BudgetSpend.__table__  # type: ignore[attr-defined]
_QUEUE = QueuedOffer.__table__  # type: ignore[attr-defined]
_PACE = RequestPace.__table__  # type: ignore[attr-defined]
_PROPOSALS = ProductProposal.__table__  # type: ignore[attr-defined]
_CATEGORIES = CategoryCache.__table__  # type: ignore[attr-defined]
_ORDERS = OrderRecord.__table__  # type: ignore[attr-defined]
_ORDER_LINES = OrderLineRecord.__table__  # type: ignore[attr-defined]
_LINE_ACTIONS = OrderLineAction.__table__  # type: ignore[attr-defined]
_SHIPMENTS = OrderShipment.__table__  # type: ignore[attr-defined]
_ORDER_PULLS = OrderPull.__table__  # type: ignore[attr-defined]
_INVOICES = OrderInvoice.__table__  # type: ignore[attr-defined]
_IDENTIFIERS = OrderLineIdentifier.__table__  # type: ignore[attr-defined]
_TABLES = (_SNAPSHOT, _REVISION, _RUNS, _LOCKS, _BATCHES, _LEDGER, _QUEUE, _PACE, _PROPOSALS,
           _CATEGORIES, _ORDERS, _ORDER_LINES, _LINE_ACTIONS, _SHIPMENTS, _ORDER_PULLS,
           _INVOICES, _IDENTIFIERS, _SCHEMA)
_FIELD_COLUMNS: Final = tuple(_SNAPSHOT.c[name] for name in FIELDS)
_ENTRY_COLUMNS: Final = (_SNAPSHOT.c.sku_key, _SNAPSHOT.c.sku, _SNAPSHOT.c.listing_id,
                         _SNAPSHOT.c.confirmed_at, _SNAPSHOT.c.status, _SNAPSHOT.c.last_error,
                         _SNAPSHOT.c.attempts, _SNAPSHOT.c.request_id, _SNAPSHOT.c.source_hash,
                         _SNAPSHOT.c.failed_hash, *_FIELD_COLUMNS)


# --- values read out of the state -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    sku: str
    listing_id: str | None
    published: Published | None  # None: never confirmed
    status: str
    last_error: str | None = None
    attempts: int = 0
    request_id: str | None = None
    source_hash: int | None = None
    failed_hash: str | None = None  # content hash of what failed last

    def quarantined(self, target: Published, after: int) -> bool:
        """Refused ``after`` runs in a row with the same error, for this very content. A
        target that takes a confirmed offer's quantity down (to 0 or lower) is never held
        back: stock that is gone must reach Back Market, or it sells what is not there."""
        if self.published is not None and \
                int(target[QUANTITY] or 0) < int(self.published[QUANTITY] or 0):
            return False
        return (after > 0 and self.status == "failed" and self.attempts >= after
                and self.failed_hash == content_hash(target))

    @property
    def live(self) -> bool:
        """Confirmed on Back Market with stock (a zeroed offer is not live)."""
        return self.published is not None and bool(self.published[FIELDS.index("quantity")])


@dataclass(frozen=True, slots=True)
class Ack:
    """Back Market confirmed these published fields for this SKU."""

    sku: str
    published: Published
    listing_id: str | None
    source_hash: int | None = None  # the catalog row it came from, when all of it was sent


@dataclass(frozen=True, slots=True)
class Failure:
    sku: str
    message: str
    code: str | None = None
    request_id: str | None = None
    attempted: Published | None = None
    # False: Back Market was not reached (connection, timeout, 5xx or 429 after retries).
    # Only an explicit refusal counts toward quarantine.
    refused: bool = True

    def __post_init__(self) -> None:
        # What Back Market said may echo a secret (invariant 9): scrubbed before it is
        # stored, printed or logged.
        object.__setattr__(self, "message", scrub(self.message))
        if self.code is not None:
            object.__setattr__(self, "code", scrub(self.code))
        if self.request_id is not None:
            object.__setattr__(self, "request_id", scrub(self.request_id))


# --- the store --------------------------------------------------------------------------------

class StateStore:
    """Access to the state database. Open with ``StateStore.open(url)`` for a run that
    publishes, or ``StateStore.open_readonly(url)`` for plan, status and errors."""

    def __init__(self, engine: Engine | None, url: str, readonly: bool) -> None:
        self._empty = engine is None
        self.engine = engine
        self.url = url
        self.readonly = readonly
        # Stores sharing listings with each store (same account), for global quantity.
        self.siblings: dict[str, tuple[str, ...]] = {}

    # -- opening --
    @classmethod
    def open(cls, url: str) -> StateStore:
        path = _sqlite_path(url)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(f"cannot create the folder of the state database "
                                 f"{path}: {exc.strerror}") from None
        store = cls(_engine(url, readonly=False), url, readonly=False)
        try:
            store._ensure_schema()
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open_readonly(cls, url: str) -> StateStore:
        path = _sqlite_path(url)
        if path is not None and not path.exists():
            return cls(None, url, readonly=True)  # nothing published yet; create nothing
        store = cls(_engine(url, readonly=True), url, readonly=True)
        try:
            store._check_schema()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_schema(self) -> None:
        assert self.engine is not None
        self._check_schema()
        try:
            SQLModel.metadata.create_all(self.engine, tables=list(_TABLES))
            with self.engine.begin() as conn:
                found = conn.execute(select(_SCHEMA.c.value).where(
                    _SCHEMA.c.key == "schema_version")).scalar()
                if found is None:
                    conn.execute(_SCHEMA.insert().values(key="schema_version",
                                                         value=str(SCHEMA_VERSION)))
                else:
                    self._migrate(conn, int(found))
        except IntegrityError:
            pass  # another process created it at the same instant
        except SQLAlchemyError as exc:
            raise _state_error(self.url, exc) from None
        self._empty = False

    def _migrate(self, conn: Any, version: int) -> None:
        """Bring an older schema up to date, in the transaction that checked its version."""
        for target in range(version + 1, SCHEMA_VERSION + 1):
            statements = MIGRATIONS[target]
            if isinstance(statements, dict):
                statements = statements.get(conn.dialect.name, ())
            for statement in statements:
                conn.execute(text(statement))
            conn.execute(sa_update(_SCHEMA).where(_SCHEMA.c.key == "schema_version")
                         .values(value=str(target)))

    def _check_schema(self) -> None:
        assert self.engine is not None
        try:
            with self.engine.connect() as conn:
                if not inspect(conn).has_table("schema_info"):
                    self._empty = True
                    return
                found = conn.execute(select(_SCHEMA.c.value).where(
                    _SCHEMA.c.key == "schema_version")).scalar()
        except SQLAlchemyError as exc:
            raise _state_error(self.url, exc) from None
        self._empty = False
        if found is not None and not str(found).isdigit():  # hand-edited or damaged
            raise StateError(
                f"the state database {_safe_url(self.url)} is damaged: schema_info."
                f"schema_version is {found!r}, expected a whole number (at most "
                f"{SCHEMA_VERSION}); restore it from a backup")
        if found is not None and int(found) > SCHEMA_VERSION:
            raise StateError(
                f"the state database {_safe_url(self.url)} has schema version {found}, newer "
                f"than this syncer understands ({SCHEMA_VERSION}); upgrade the syncer"
            )
        if found is not None and int(found) < SCHEMA_VERSION and self.readonly:
            raise StateError(
                f"the state database {_safe_url(self.url)} has the older schema version "
                f"{found}; `syncer apply` or `syncer run` upgrades it (to {SCHEMA_VERSION})")

    @property
    def empty(self) -> bool:
        """No state yet: nothing was ever published (reads return nothing)."""
        return self._empty

    @contextmanager
    def _read(self) -> Iterator[Any]:
        assert self.engine is not None
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise _state_error(self.url, exc) from None

    @contextmanager
    def _write(self) -> Iterator[Any]:
        if self.readonly or self.engine is None:
            raise StateError("internal error: write attempted on a read-only state")
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise _state_error(self.url, exc) from None

    # -- snapshot --
    def snapshot(self, store: str) -> dict[str, SnapshotEntry]:
        if self.empty:
            return {}
        with self._read() as conn:
            result = conn.execution_options(yield_per=10_000).execute(
                select(*_ENTRY_COLUMNS).where(_SNAPSHOT.c.store == store))
            return dict(_entry(row) for row in result)

    def snapshot_entries(self, store: str, keys: Iterable[str]) -> dict[str, SnapshotEntry]:
        """Whole entries of these SKU keys (those the snapshot has)."""
        wanted = list(keys)
        if self.empty or not wanted:
            return {}
        entries: dict[str, SnapshotEntry] = {}
        with self._read() as conn:
            for start in range(0, len(wanted), 500):
                rows = conn.execute(select(*_ENTRY_COLUMNS).where(
                    _SNAPSHOT.c.store == store,
                    _SNAPSHOT.c.sku_key.in_(wanted[start:start + 500])))
                entries.update(_entry(row) for row in rows)
        return entries

    def snapshot_index(self, store: str) -> dict[str, int | None]:
        """Every SKU key of the store's snapshot -> the source hash of its confirmed, live
        offer, None, or -1 when nothing of it was ever confirmed. Compact: what planning keeps
        in memory for a million offers (see ``syncer.diff.SnapshotSource``)."""
        if self.empty:
            return {}
        with self._read() as conn:
            # The driver's own cursor: a million plain tuples, without SQLAlchemy's rows.
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            cursor = conn.connection.driver_connection.cursor()
            try:
                cursor.execute(
                    "SELECT sku_key, CASE WHEN confirmed_at IS NULL THEN -1 WHEN status = "
                    f"'live' THEN source_hash END FROM offer_snapshot WHERE store = {mark}",
                    (store,))
                index: dict[str, int | None] = {}
                while rows := cursor.fetchmany(20_000):
                    index.update(rows)
                return index
            finally:
                cursor.close()

    def live_count(self, store: str) -> int:
        if self.empty:
            return 0
        c = _SNAPSHOT.c
        with self._read() as conn:
            return int(conn.execute(select(func.count()).where(
                c.store == store, c.confirmed_at.is_not(None), c.quantity > 0)).scalar() or 0)

    def revision(self, store: str) -> int:
        if self.empty:
            return 0
        with self._read() as conn:
            found = conn.execute(select(_REVISION.c.revision).where(
                _REVISION.c.store == store)).scalar()
        return int(found or 0)

    def record_acks(self, store: str, acks: Sequence[Ack],
                    sent_at: datetime | None = None) -> list[Ack]:
        """Confirmed publications: the snapshot takes the new values, errors are cleared.
        Written in chunks through the driver's executemany: a batch task can confirm
        thousands of offers at once (and the bench holds this above 50,000 a second).

        Confirmations only move forward: ``confirmed_at`` is when the confirmed request was
        sent (``sent_at``; now for a real-time update), and an acknowledgement of a request
        sent before the newest confirmation of its listing (in this store or a sibling that
        shares its quantity) replaces nothing. Those are returned: what Back Market holds
        for them depends on the order it applied the two, so the caller reads it."""
        now = utcnow()
        stale: list[Ack] = []
        if sent_at is not None and acks:
            newer = self._confirmed_after(store, [sku_key(ack.sku) for ack in acks], sent_at)
            if newer:
                stale = [ack for ack in acks if sku_key(ack.sku) in newer]
                acks = [ack for ack in acks if sku_key(ack.sku) not in newer]
        when = sent_at or now
        queued = bool(self.queued(store))
        for start in range(0, len(acks), _ACK_CHUNK):
            chunk = acks[start:start + _ACK_CHUNK]
            with self._write() as conn:
                _ACK_WRITER.write(conn, store, chunk, when, now)
                if queued:
                    self._unqueue(conn, store, [sku_key(ack.sku) for ack in chunk])
                self._bump(conn, store, now)
        crashpoint("acks:before-siblings")
        self._note_global_quantity(store, acks, when)
        return stale

    def _confirmed_after(self, store: str, keys: Sequence[str], when: datetime) -> set[str]:
        """Keys whose listing has a confirmation newer than ``when`` in this store or one of
        its siblings."""
        stores = [store, *self.siblings.get(store, ())]
        found: set[str] = set()
        with self._read() as conn:
            for start in range(0, len(keys), _BULK):
                found.update(conn.execute(select(_SNAPSHOT.c.sku_key).where(
                    _SNAPSHOT.c.store.in_(stores),
                    _SNAPSHOT.c.sku_key.in_(keys[start:start + _BULK]),
                    _SNAPSHOT.c.confirmed_at > when)).scalars())
        return found

    def record_observed(self, store: str, observed: Sequence[Ack]) -> None:
        """What reconciliation read on Back Market becomes the snapshot's confirmed values
        (a failure still waiting to be retried stays recorded beside them)."""
        now = utcnow()
        for start in range(0, len(observed), _BULK):
            chunk = observed[start:start + _BULK]
            rows = [
                {"store": store, "sku_key": sku_key(ack.sku), "sku": ack.sku,
                 "listing_id": ack.listing_id, **dict(zip(FIELDS, ack.published, strict=True)),
                 "content_hash": content_hash(ack.published), "source_hash": None,
                 "confirmed_at": now, "status": "live", "attempts": 0, "updated_at": now}
                for ack in chunk
            ]
            update = ["sku", "listing_id", *FIELDS, "content_hash", "source_hash",
                      "confirmed_at", "updated_at"]
            with self._write() as conn:
                _upsert(conn, _SNAPSHOT, rows, ("store", "sku_key"), update)
                self._bump(conn, store, now)
        self._note_global_quantity(store, observed)

    def forget(self, store: str, skus: Sequence[str]) -> None:
        """Offers Back Market no longer has: the next plan creates them again if needed."""
        if not skus:
            return
        keys = [sku_key(sku) for sku in skus]
        with self._write() as conn:
            for start in range(0, len(keys), _BULK):
                conn.execute(sa_delete(_SNAPSHOT).where(
                    _SNAPSHOT.c.store == store,
                    _SNAPSHOT.c.sku_key.in_(keys[start:start + _BULK])))
            self._bump(conn, store, utcnow())

    def _note_global_quantity(self, store: str, acks: Sequence[Ack],
                              when: datetime | None = None) -> None:
        """Quantity is global on Back Market: once confirmed through one store it is what
        every store of the listing shows. Other stores' confirmed rows of the SKU follow, so
        they do not send the same stock again (every send costs hourly budget); a sibling's
        newer confirmation (after ``when``, the time the request was sent) is kept."""
        siblings = self.siblings.get(store, ())
        if not siblings or not acks:
            return
        qty = FIELDS.index("quantity")
        wanted = {sku_key(ack.sku): ack.published[qty] for ack in acks}
        keys = list(wanted)
        now = utcnow()
        when = when or now
        columns = (_SNAPSHOT.c.store, _SNAPSHOT.c.sku_key, *_FIELD_COLUMNS)
        with self._write() as conn:
            touched: set[str] = set()
            for start in range(0, len(keys), _BULK):
                rows = conn.execute(select(*columns).where(
                    _SNAPSHOT.c.store.in_(siblings),
                    _SNAPSHOT.c.sku_key.in_(keys[start:start + _BULK]),
                    _SNAPSHOT.c.confirmed_at.is_not(None),
                    _SNAPSHOT.c.confirmed_at <= when)).all()
                for sibling, key, *fields in rows:
                    if fields[qty] == wanted[key]:
                        continue
                    fields[qty] = wanted[key]
                    conn.execute(
                        sa_update(_SNAPSHOT)
                        .where(_SNAPSHOT.c.store == sibling, _SNAPSHOT.c.sku_key == key,
                               _SNAPSHOT.c.confirmed_at <= when)
                        .values(quantity=wanted[key], updated_at=now, confirmed_at=when,
                                content_hash=content_hash(tuple(fields))))
                    touched.add(sibling)
            for sibling in sorted(touched):
                self._bump(conn, sibling, now)

    def record_failures(self, store: str, failures: Sequence[Failure]) -> None:
        """A failed attempt: kept beside the last confirmed values, which do not move.
        ``attempts`` counts the runs in a row that Back Market refused with this same error
        (another error starts the count again; a failure to reach Back Market sets it to 0):
        it is what quarantine looks at."""
        now = utcnow()
        with self._write() as conn:
            for failure in failures:
                key = sku_key(failure.sku)
                failed_hash = (content_hash(failure.attempted)
                               if failure.attempted is not None else None)
                values = {
                    "status": "failed", "last_error": failure.message,
                    "error_code": failure.code, "request_id": failure.request_id,
                    "failed_hash": failed_hash, "updated_at": now,
                }
                same = and_(_SNAPSHOT.c.status == "failed",
                            _SNAPSHOT.c.last_error == failure.message)
                attempts: Any = case((same, _SNAPSHOT.c.attempts + 1), else_=1) \
                    if failure.refused else 0
                done = conn.execute(
                    sa_update(_SNAPSHOT)
                    .where(_SNAPSHOT.c.store == store, _SNAPSHOT.c.sku_key == key)
                    .values(attempts=attempts, **values)
                ).rowcount
                if not done:
                    conn.execute(_SNAPSHOT.insert().values(
                        store=store, sku_key=key, sku=failure.sku,
                        attempts=1 if failure.refused else 0, **values))
            self._unqueue(conn, store, [sku_key(f.sku) for f in failures])
            self._bump(conn, store, now)

    def release(self, store: str, sku: str) -> bool:
        """Let a quarantined offer be sent again (`syncer retry`); False when the store has
        no failed offer with this SKU."""
        with self._write() as conn:
            done = conn.execute(sa_update(_SNAPSHOT).where(
                _SNAPSHOT.c.store == store, _SNAPSHOT.c.sku_key == sku_key(sku),
                _SNAPSHOT.c.status == "failed").values(attempts=0, updated_at=utcnow())
            ).rowcount
            if done:
                self._bump(conn, store, utcnow())
        return bool(done)

    def _bump(self, conn: Any, store: str, now: datetime) -> None:
        done = conn.execute(
            sa_update(_REVISION).where(_REVISION.c.store == store)
            .values(revision=_REVISION.c.revision + 1, updated_at=now)
        ).rowcount
        if not done:
            _upsert(conn, _REVISION, [{"store": store, "revision": 1, "updated_at": now}],
                    ("store",), ["revision", "updated_at"])

    # -- the queue of work that did not fit a run --
    def queued(self, store: str) -> dict[str, tuple[str, str, datetime]]:
        """sku_key -> (sku, reason, queued_at) of the store's queued offers."""
        if self.empty:
            return {}
        with self._read() as conn:
            rows = conn.execute(select(_QUEUE.c.sku_key, _QUEUE.c.sku, _QUEUE.c.reason,
                                       _QUEUE.c.queued_at).where(_QUEUE.c.store == store))
            return {key: (sku, reason, _aware(at)) for key, sku, reason, at in rows}

    def enqueue(self, store: str, offers: Sequence[tuple[str, str]]) -> None:
        """Queue (sku, reason) pairs; an offer already queued keeps its place in line."""
        if not offers:
            return
        now = utcnow()
        rows = [{"store": store, "sku_key": sku_key(sku), "sku": sku, "reason": reason,
                 "queued_at": now} for sku, reason in offers]
        with self._write() as conn:
            for start in range(0, len(rows), _BULK):
                _upsert(conn, _QUEUE, rows[start:start + _BULK], ("store", "sku_key"),
                        ["reason"])

    def _unqueue(self, conn: Any, store: str, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), _BULK):
            conn.execute(sa_delete(_QUEUE).where(
                _QUEUE.c.store == store, _QUEUE.c.sku_key.in_(keys[start:start + _BULK])))

    # -- the hourly SKU budget --
    def budget_used(self, account: str, now: datetime | None = None) -> int:
        if self.empty:
            return 0
        since = (now or utcnow()) - timedelta(hours=1)
        with self._read() as conn:
            return int(conn.execute(select(func.coalesce(func.sum(_LEDGER.c.lines), 0)).where(
                _LEDGER.c.account == account, _LEDGER.c.spent_at > since)).scalar() or 0)

    def spend_budget(self, account: str, lines: int, limit: int,
                     now: datetime | None = None) -> int:
        """Take up to ``lines`` from the account's hourly budget; returns what was granted.
        Check and spend are one transaction (PostgreSQL: under an advisory lock), so runs of
        several stores of one account never overspend together."""
        now = now or utcnow()
        since = now - timedelta(hours=1)
        with self._write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:account))"),
                             {"account": account})
            used = int(conn.execute(select(func.coalesce(func.sum(_LEDGER.c.lines), 0)).where(
                _LEDGER.c.account == account, _LEDGER.c.spent_at > since)).scalar() or 0)
            granted = max(0, min(lines, limit - used))
            if granted:
                conn.execute(_LEDGER.insert().values(account=account, spent_at=now,
                                                     lines=granted))
            conn.execute(sa_delete(_LEDGER).where(
                _LEDGER.c.account == account, _LEDGER.c.spent_at < now - timedelta(hours=2)))
        return granted

    def refund_budget(self, account: str, lines: int, now: datetime | None = None) -> None:
        """Give back lines taken for requests that Back Market refused before processing."""
        if lines > 0:
            with self._write() as conn:
                conn.execute(_LEDGER.insert().values(account=account,
                                                     spent_at=now or utcnow(), lines=-lines))

    # -- products --
    def proposals(self, store: str) -> dict[str, dict[str, Any]]:
        """EAN -> the store's proposal record (sku, content_hash, status, reason...)."""
        if self.empty:
            return {}
        with self._read() as conn:
            rows = conn.execute(select(_PROPOSALS).where(_PROPOSALS.c.store == store))
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
        with self._write() as conn:
            _upsert(conn, _PROPOSALS, rows, ("store", "ean"),
                    ["sku", "content_hash", "status", "reason", "product_id", "updated_at"])

    def rejected_products(self, store: str | None = None) -> list[dict[str, Any]]:
        if self.empty:
            return []
        query = select(_PROPOSALS).where(_PROPOSALS.c.status == "rejected").order_by(
            _PROPOSALS.c.store, _PROPOSALS.c.ean)
        if store is not None:
            query = query.where(_PROPOSALS.c.store == store)
        with self._read() as conn:
            return [row._asdict() for row in conn.execute(query)]

    def category_tree(self, account: str) -> list[dict[str, Any]] | None:
        if self.empty:
            return None
        with self._read() as conn:
            found = conn.execute(select(_CATEGORIES.c.tree).where(
                _CATEGORIES.c.account == account)).scalar()
        return None if found is None else list(json.loads(found))

    def save_category_tree(self, account: str, tree: list[dict[str, Any]]) -> None:
        with self._write() as conn:
            _upsert(conn, _CATEGORIES, [{"account": account, "tree": json.dumps(tree),
                                         "fetched_at": utcnow()}], ("account",),
                    ["tree", "fetched_at"])

    # -- request pace --
    def load_pace(self, account: str) -> dict[str, list[float]]:
        if self.empty:
            return {}
        with self._read() as conn:
            found = conn.execute(select(_PACE.c.sent).where(_PACE.c.account == account)).scalar()
        if not found:
            return {}
        return {name: [float(t) for t in times] for name, times in json.loads(found).items()}

    def save_pace(self, account: str, sent: dict[str, list[float]]) -> None:
        with self._write() as conn:
            _upsert(conn, _PACE, [{"account": account, "sent": json.dumps(sent),
                                   "updated_at": utcnow()}], ("account",),
                    ["sent", "updated_at"])

    # -- orders --
    def save_orders(self, orders: Sequence[dict[str, Any]],
                    lines: Sequence[dict[str, Any]]) -> None:
        """Upsert orders and their lines as Back Market last showed them, in one
        transaction. An order keeps the store that first pulled it. Rows of one call must
        all have the same columns."""
        if not orders and not lines:
            return
        with self._write() as conn:
            for table, rows, keys, fixed in (
                (_ORDERS, orders, ("account", "order_id"), ("store",)),
                (_ORDER_LINES, lines, ("account", "orderline_id"), ()),
            ):
                for start in range(0, len(rows), _BULK):
                    chunk = list(rows[start:start + _BULK])
                    update = [c for c in chunk[0] if c not in (*keys, *fixed)]
                    _upsert(conn, table, chunk, keys, update)

    def order_hashes(self, account: str, order_ids: Sequence[int]) -> dict[int, str]:
        """order_id -> content hash of the orders already in the state."""
        if self.empty or not order_ids:
            return {}
        found: dict[int, str] = {}
        with self._read() as conn:
            for start in range(0, len(order_ids), _BULK):
                rows = conn.execute(select(_ORDERS.c.order_id, _ORDERS.c.content_hash).where(
                    _ORDERS.c.account == account,
                    _ORDERS.c.order_id.in_(order_ids[start:start + _BULK])))
                found.update({int(i): h for i, h in rows})
        return found

    def find_order(self, account: str, order_id: int) -> dict[str, Any] | None:
        """The order's row with its ``lines`` (by orderline id), or None."""
        orders = self._orders_where(and_(_ORDERS.c.account == account,
                                         _ORDERS.c.order_id == order_id))
        return orders[0] if orders else None

    def orders_in_state(self, stores: Sequence[str], state: int) -> list[dict[str, Any]]:
        """Orders first pulled by these stores and in this order state, with their lines,
        oldest payment first."""
        if not stores:
            return []
        return self._orders_where(and_(_ORDERS.c.store.in_(list(stores)),
                                       _ORDERS.c.state == state))

    def order_line_units(self, account: str, states: Iterable[int]
                         ) -> list[tuple[str, int, int]]:
        """(sku, quantity, line state) of the account's pulled order lines in these line
        states, whichever store pulled them (stock is global)."""
        if self.empty:
            return []
        with self._read() as conn:
            if not inspect(conn).has_table(_ORDER_LINES.name):
                return []  # a state made before orders existed, opened read-only by a plan
            rows = conn.execute(select(
                _ORDER_LINES.c.sku, _ORDER_LINES.c.quantity, _ORDER_LINES.c.state).where(
                _ORDER_LINES.c.account == account,
                _ORDER_LINES.c.state.in_(sorted(states))))
            return [(str(sku), int(quantity), int(state)) for sku, quantity, state in rows]

    @staticmethod
    def _aware_row(row: dict[str, Any]) -> dict[str, Any]:
        return {k: _aware(v) if isinstance(v, datetime) else v for k, v in row.items()}

    def _orders_where(self, condition: Any) -> list[dict[str, Any]]:
        if self.empty:
            return []
        with self._read() as conn:
            orders = [
                self._aware_row(row._asdict()) for row in conn.execute(
                    select(_ORDERS).where(condition).order_by(
                        _ORDERS.c.date_payment, _ORDERS.c.order_id))
            ]
            for order in orders:
                lines = conn.execute(select(_ORDER_LINES).where(
                    _ORDER_LINES.c.account == order["account"],
                    _ORDER_LINES.c.order_id == order["order_id"],
                ).order_by(_ORDER_LINES.c.orderline_id))
                order["lines"] = {int(line.orderline_id): line._asdict() for line in lines}
        return orders

    def line_actions(self, account: str, order_id: int) -> dict[int, dict[str, Any]]:
        """orderline_id -> the last action recorded on each line of the order."""
        if self.empty:
            return {}
        with self._read() as conn:
            rows = conn.execute(select(_LINE_ACTIONS).where(
                _LINE_ACTIONS.c.account == account, _LINE_ACTIONS.c.order_id == order_id))
            return {int(r.orderline_id): self._aware_row(r._asdict()) for r in rows}

    def record_line_action(self, account: str, orderline_id: int, order_id: int, sku: str,
                           action: str, status: str, reason: str | None = None,
                           request_id: str | None = None) -> None:
        """What was done or decided about a line; failed attempts are counted."""
        with self._write() as conn:
            before = conn.execute(select(_LINE_ACTIONS.c.attempts, _LINE_ACTIONS.c.status).where(
                _LINE_ACTIONS.c.account == account,
                _LINE_ACTIONS.c.orderline_id == orderline_id)).first()
            attempts = 0
            if status == "failed":
                attempts = 1 + (before.attempts if before and before.status == "failed" else 0)
            row = {"account": account, "orderline_id": orderline_id, "order_id": order_id,
                   "sku": sku, "action": action, "status": status,
                   "reason": reason and scrub(reason), "request_id": request_id and scrub(
                       request_id), "attempts": attempts, "updated_at": utcnow()}
            _upsert(conn, _LINE_ACTIONS, [row], ("account", "orderline_id"),
                    [c for c in row if c not in ("account", "orderline_id")])

    def shipment(self, account: str, order_id: int) -> dict[str, Any] | None:
        if self.empty:
            return None
        with self._read() as conn:
            row = conn.execute(select(_SHIPMENTS).where(
                _SHIPMENTS.c.account == account, _SHIPMENTS.c.order_id == order_id)).first()
        return None if row is None else self._aware_row(row._asdict())

    def record_shipment(self, shipment: dict[str, Any]) -> None:
        """A shipment's outcome (``status`` "confirmed" or "failed"). A confirmed shipment
        is final: it is never overwritten by a later failure."""
        with self._write() as conn:
            before = conn.execute(select(_SHIPMENTS.c.status, _SHIPMENTS.c.attempts).where(
                _SHIPMENTS.c.account == shipment["account"],
                _SHIPMENTS.c.order_id == shipment["order_id"])).first()
            if before is not None and before.status == "confirmed":
                return
            now = utcnow()
            confirmed = shipment["status"] == "confirmed"
            row = {**shipment, "updated_at": now,
                   "confirmed_at": now if confirmed else None,
                   "attempts": 0 if confirmed else 1 + (before.attempts if before else 0)}
            _upsert(conn, _SHIPMENTS, [row], ("account", "order_id"),
                    [c for c in row if c not in ("account", "order_id")])

    def invoice(self, account: str, order_id: int) -> dict[str, Any] | None:
        if self.empty:
            return None
        with self._read() as conn:
            row = conn.execute(select(_INVOICES).where(
                _INVOICES.c.account == account, _INVOICES.c.order_id == order_id)).first()
        return None if row is None else self._aware_row(row._asdict())

    def record_invoice(self, invoice: dict[str, Any]) -> None:
        """An invoice upload's outcome (``status`` "confirmed" or "failed"). A confirmed
        invoice is final: a later failure never overwrites it."""
        with self._write() as conn:
            before = conn.execute(select(_INVOICES.c.status, _INVOICES.c.attempts).where(
                _INVOICES.c.account == invoice["account"],
                _INVOICES.c.order_id == invoice["order_id"])).first()
            if before is not None and before.status == "confirmed":
                return
            now = utcnow()
            confirmed = invoice["status"] == "confirmed"
            row = {**invoice, "updated_at": now, "confirmed_at": now if confirmed else None,
                   "error": invoice.get("error") and scrub(invoice["error"]),
                   "attempts": 0 if confirmed else 1 + (before.attempts if before else 0)}
            _upsert(conn, _INVOICES, [row], ("account", "order_id"),
                    [c for c in row if c not in ("account", "order_id")])

    def line_identifier(self, account: str, orderline_id: int) -> dict[str, Any] | None:
        if self.empty:
            return None
        with self._read() as conn:
            row = conn.execute(select(_IDENTIFIERS).where(
                _IDENTIFIERS.c.account == account,
                _IDENTIFIERS.c.orderline_id == orderline_id)).first()
        return None if row is None else self._aware_row(row._asdict())

    def record_line_identifier(self, record: dict[str, Any]) -> None:
        """The outcome of registering identifiers on a line. Confirmed values are kept: a
        confirmation adds to them (an IMEI then a serial number), a failure never clears
        them."""
        with self._write() as conn:
            before = conn.execute(select(_IDENTIFIERS).where(
                _IDENTIFIERS.c.account == record["account"],
                _IDENTIFIERS.c.orderline_id == record["orderline_id"])).first()
            now = utcnow()
            confirmed = record["status"] == "confirmed"
            kept = {name: getattr(before, name) if before is not None else None
                    for name in ("imei", "serial_number", "confirmed_at")}
            row = {**record, "updated_at": now,
                   "error": record.get("error") and scrub(record["error"]),
                   "attempts": 0 if confirmed else 1 + (before.attempts if before else 0)}
            for name in ("imei", "serial_number"):
                row[name] = (record.get(name) if confirmed else None) or kept[name]
            row["confirmed_at"] = now if confirmed else kept["confirmed_at"]
            _upsert(conn, _IDENTIFIERS, [row], ("account", "orderline_id"),
                    [c for c in row if c not in ("account", "orderline_id")])

    def order_watermark(self, store: str, scope: str) -> datetime | None:
        """The latest ``date_modification`` the store's last successful pull saw."""
        if self.empty:
            return None
        with self._read() as conn:
            found = conn.execute(select(_ORDER_PULLS.c.watermark).where(
                _ORDER_PULLS.c.store == store, _ORDER_PULLS.c.scope == scope)).scalar()
        return None if found is None else _aware(found)

    def set_order_watermark(self, store: str, scope: str, watermark: datetime | None) -> None:
        row = {"store": store, "scope": scope, "watermark": watermark, "pulled_at": utcnow()}
        with self._write() as conn:
            _upsert(conn, _ORDER_PULLS, [row], ("store", "scope"), ["watermark", "pulled_at"])

    # -- batches in flight --
    def add_pending_batch(self, store: str, offers: dict[str, list[Any]]) -> int:
        with self._write() as conn:
            result = conn.execute(_BATCHES.insert().values(
                store=store, offers=json.dumps(offers), created_at=utcnow()))
            return int(result.inserted_primary_key[0])

    def set_batch_task(self, batch_id: int, task_id: int) -> None:
        with self._write() as conn:
            conn.execute(sa_update(_BATCHES).where(_BATCHES.c.id == batch_id)
                         .values(task_id=task_id))

    def batch_sent_at(self, batch_id: int) -> datetime | None:
        """When the batch was written, just before its POST (None: no such batch)."""
        with self._read() as conn:
            found = conn.execute(select(_BATCHES.c.created_at).where(
                _BATCHES.c.id == batch_id)).scalar()
        return None if found is None else _aware(found)

    def pending_batches(self, store: str) -> list[tuple[int, int | None, dict[str, list[Any]]]]:
        if self.empty:
            return []
        with self._read() as conn:
            rows = conn.execute(select(_BATCHES.c.id, _BATCHES.c.task_id, _BATCHES.c.offers)
                                .where(_BATCHES.c.store == store).order_by(_BATCHES.c.id))
            return [(int(i), t, json.loads(o)) for i, t, o in rows]

    def offers_in_flight(self, store: str) -> int:
        return sum(len(offers) for _, _, offers in self.pending_batches(store))

    def remove_batch(self, batch_id: int) -> None:
        with self._write() as conn:
            conn.execute(sa_delete(_BATCHES).where(_BATCHES.c.id == batch_id))

    # -- locks --
    @contextmanager
    def lock(self, store: str, lease_seconds: float, run_id: str) -> Iterator[StoreLease]:
        lease = StoreLease(self, store, lease_seconds, holder_id(run_id))
        lease.acquire()
        try:
            yield lease
        finally:
            lease.release()

    # -- run log --
    def start_run(self, run_id: str, store: str, kind: str,
                  at: datetime | None = None) -> int:
        with self._write() as conn:
            result = conn.execute(_RUNS.insert().values(
                run_id=run_id, store=store, kind=kind, started_at=at or utcnow(),
                outcome="running", counts="{}"))
            return int(result.inserted_primary_key[0])

    def finish_run(self, record_id: int, outcome: str, counts: dict[str, int],
                   message: str | None = None, at: datetime | None = None) -> None:
        with self._write() as conn:
            conn.execute(sa_update(_RUNS).where(_RUNS.c.id == record_id).values(
                finished_at=at or utcnow(), outcome=outcome,
                counts=json.dumps(counts, sort_keys=True),
                message=message and scrub(message)))

    def last_success(self, store: str, kinds: Sequence[str]) -> datetime | None:
        """When the last run of one of these kinds that completed its work started."""
        if self.empty:
            return None
        with self._read() as conn:
            found = conn.execute(select(func.max(_RUNS.c.started_at)).where(
                _RUNS.c.store == store, _RUNS.c.kind.in_(list(kinds)),
                _RUNS.c.outcome.in_(SUCCESSFUL_OUTCOMES))).scalar()
        return None if found is None else _aware(found)

    def runs(self, store: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
        if self.empty:
            return []
        query = select(_RUNS).order_by(_RUNS.c.id.desc()).limit(limit)
        if store is not None:
            query = query.where(_RUNS.c.store == store)
        with self._read() as conn:
            return [
                {**row._asdict(), "counts": json.loads(row.counts)}
                for row in conn.execute(query)
            ]

    # -- reading for status and errors --
    def status_counts(self, store: str) -> dict[str, int]:
        names = ("live", "zeroed", "failed", "never_confirmed")
        if self.empty:
            return dict.fromkeys(names, 0)
        c = _SNAPSHOT.c
        confirmed = c.confirmed_at.is_not(None)
        conditions = (and_(confirmed, c.quantity > 0), and_(confirmed, c.quantity == 0),
                      c.status == "failed", c.confirmed_at.is_(None))
        query = select(*(func.coalesce(func.sum(case((cond, 1), else_=0)), 0)
                         for cond in conditions)).where(c.store == store)
        with self._read() as conn:
            row = conn.execute(query).one()
        return {name: int(value) for name, value in zip(names, row, strict=True)}

    def failures(self, store: str | None = None) -> list[dict[str, Any]]:
        if self.empty:
            return []
        query = select(_SNAPSHOT.c.store, _SNAPSHOT.c.sku, _SNAPSHOT.c.last_error,
                       _SNAPSHOT.c.error_code, _SNAPSHOT.c.request_id, _SNAPSHOT.c.attempts,
                       _SNAPSHOT.c.updated_at, _SNAPSHOT.c.confirmed_at).where(
            _SNAPSHOT.c.status == "failed").order_by(_SNAPSHOT.c.store, _SNAPSHOT.c.sku_key)
        if store is not None:
            query = query.where(_SNAPSHOT.c.store == store)
        with self._read() as conn:  # scrubbed again: rows written before the scrubbing
            return [{**row._asdict(), "last_error": row.last_error and scrub(row.last_error),
                     "error_code": row.error_code and scrub(row.error_code)}
                    for row in conn.execute(query)]

    def stores(self) -> list[str]:
        if self.empty:
            return []
        with self._read() as conn:
            return [r[0] for r in conn.execute(
                select(_SNAPSHOT.c.store).distinct().order_by(_SNAPSHOT.c.store))]


class StoreSnapshot:
    """A store's snapshot as the diff reads it (``syncer.diff.SnapshotSource``): a compact
    index of every SKU, whole entries in batches on demand."""

    def __init__(self, state: StateStore, store: str) -> None:
        self.state = state
        self.store = store

    def index(self) -> dict[str, int | None]:
        return self.state.snapshot_index(self.store)

    def entries(self, keys: Iterable[str]) -> dict[str, SnapshotEntry]:
        return self.state.snapshot_entries(self.store, keys)

    def live_count(self) -> int:
        return self.state.live_count(self.store)


class StoreLease:
    """A lease on a store's lock in the state database. A holder that dies stops renewing;
    its lease expires and the next run takes over (or at once, if the holder's process is
    known dead on this host). The holder calls ``keep`` before every request: it renews
    every third of the lease (``syncer.config.lease_renew_every``)."""

    def __init__(self, state: StateStore, store: str, seconds: float, holder: str, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.state = state
        self.store = store
        self.seconds = seconds
        self.holder = holder
        self.renew_every = lease_renew_every(seconds)
        self.clock = clock
        self._renewed = clock()

    def acquire(self) -> None:
        self._renewed = self.clock()
        now = utcnow()
        expires = now + timedelta(seconds=self.seconds)
        with self.state._write() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(_LOCKS.insert().values(
                        store=self.store, holder=self.holder, acquired_at=now, expires_at=expires))
                return
            except IntegrityError:
                pass
            current = conn.execute(select(_LOCKS.c.holder, _LOCKS.c.expires_at).where(
                _LOCKS.c.store == self.store)).first()
            if current is None:  # released in between: take it
                conn.execute(_LOCKS.insert().values(
                    store=self.store, holder=self.holder, acquired_at=now, expires_at=expires))
                return
            holder, until = current
            if until > now and not _holder_dead(holder):
                raise LockHeld(self.store, holder, until.isoformat(timespec="seconds"))
            taken = conn.execute(
                sa_update(_LOCKS).where(_LOCKS.c.store == self.store,
                                        _LOCKS.c.holder == holder,
                                        _LOCKS.c.expires_at == until)
                .values(holder=self.holder, acquired_at=now, expires_at=expires)
            ).rowcount
            if not taken:
                raise LockHeld(self.store, "another run", "now")

    def keep(self) -> None:
        """Renew the lease if a renewal is due; StateError if another run took it."""
        if self.clock() - self._renewed >= self.renew_every:
            self.renew()

    def renew(self) -> None:
        renewed = self.clock()
        with self.state._write() as conn:
            kept = conn.execute(
                sa_update(_LOCKS).where(_LOCKS.c.store == self.store,
                                        _LOCKS.c.holder == self.holder)
                .values(expires_at=utcnow() + timedelta(seconds=self.seconds))
            ).rowcount
        if not kept:
            raise StateError(f"store {self.store}: lost the run lock (lease expired and taken)")
        self._renewed = renewed
        log.debug("lock lease renewed", store=self.store, lease_seconds=self.seconds)

    def release(self) -> None:
        try:
            with self.state._write() as conn:
                conn.execute(sa_delete(_LOCKS).where(_LOCKS.c.store == self.store,
                                                     _LOCKS.c.holder == self.holder))
        except StateError:
            pass  # the lease will expire on its own


def holder_id(run_id: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{run_id}"


def _holder_dead(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


# --- helpers ----------------------------------------------------------------------------------

def _entry(row: Any) -> tuple[str, SnapshotEntry]:
    key, sku, listing_id, confirmed, status, error, attempts, rid, source, failed, *fields = row
    return key, SnapshotEntry(sku=sku, listing_id=listing_id,
                              published=tuple(fields) if confirmed is not None else None,
                              status=status, last_error=error, attempts=attempts,
                              request_id=rid, source_hash=source, failed_hash=failed)


class _AckWriter:
    """The snapshot upsert of acknowledgements, as one driver-level executemany of tuples
    (what SQLAlchemy's per-row parameter processing would cost four times over)."""

    COLUMNS: Final = ("store", "sku_key", "sku", "listing_id", *FIELDS, "content_hash",
                      "source_hash", "confirmed_at", "status", "last_error", "error_code",
                      "request_id", "attempts", "failed_hash", "updated_at")

    def __init__(self) -> None:
        self._sql: dict[str, str] = {}

    def statement(self, dialect: Any) -> str:
        name = dialect.name
        if name not in self._sql:
            if name not in ("sqlite", "postgresql"):
                raise StateError(f"state databases on {name} are not supported; use SQLite "
                                 "or PostgreSQL")
            mark = "?" if dialect.paramstyle == "qmark" else "%s"
            self._sql[name] = (
                f"INSERT INTO offer_snapshot ({', '.join(self.COLUMNS)}) VALUES "
                f"({', '.join([mark] * len(self.COLUMNS))}) {self.ON_CONFLICT}")
        return self._sql[name]

    # A confirmation never replaces a newer one (see StateStore.record_acks).
    ON_CONFLICT: Final = (
        "ON CONFLICT (store, sku_key) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:])
        + " WHERE offer_snapshot.confirmed_at IS NULL"
        " OR offer_snapshot.confirmed_at <= excluded.confirmed_at")

    def write(self, conn: Any, store: str, acks: Sequence[Ack], sent_at: datetime,
              now: datetime) -> None:
        dialect = conn.dialect
        if dialect.name == "postgresql":
            self._copy(conn, store, acks, sent_at, now)
            return
        stamp = _SNAPSHOT.c.confirmed_at.type.dialect_impl(dialect).bind_processor(dialect)
        sent, when = (stamp(sent_at), stamp(now)) if stamp is not None else (sent_at, now)
        conn.exec_driver_sql(self.statement(dialect), self._rows(store, acks, sent, when))

    def _rows(self, store: str, acks: Sequence[Ack], sent: object,
              when: object) -> list[tuple[Any, ...]]:
        return [(store, sku_key(ack.sku), ack.sku, ack.listing_id, *ack.published,
                 content_hash(ack.published), ack.source_hash, sent, "live", None, None,
                 None, 0, None, when) for ack in acks]

    def _copy(self, conn: Any, store: str, acks: Sequence[Ack], sent_at: datetime,
              now: datetime) -> None:
        """PostgreSQL: COPY into a staging table, then one upsert from it (several times
        faster than row-by-row statements, even pipelined)."""
        columns = ", ".join(self.COLUMNS)
        driver = conn.connection.driver_connection
        with driver.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE IF NOT EXISTS ack_stage (LIKE offer_snapshot) "
                           "ON COMMIT DELETE ROWS")
            with cursor.copy(f"COPY ack_stage ({columns}) FROM STDIN") as copy:
                for row in self._rows(store, acks, sent_at, now):
                    copy.write_row(row)
            cursor.execute(f"INSERT INTO offer_snapshot ({columns}) SELECT {columns} FROM "
                           f"ack_stage {self.ON_CONFLICT}")
            cursor.execute("TRUNCATE ack_stage")


_ACK_WRITER: Final = _AckWriter()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return None
    return Path(url[len("sqlite:///"):].split("?")[0])


def _engine(url: str, *, readonly: bool) -> Engine:
    from urllib.parse import parse_qs

    path = _sqlite_path(url)
    try:
        if path is not None:
            target = f"sqlite:///file:{path}?mode=ro&uri=true" if readonly else url
            # How long to wait for another process's write lock before failing with
            # "locked": 30 s, or the URL's ?timeout=SECONDS.
            timeout = float(parse_qs(url.partition("?")[2]).get("timeout", ["30"])[0])
            engine = create_engine(target, poolclass=NullPool,
                                   connect_args={"timeout": timeout})
            if not readonly:
                event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        options: dict[str, Any] = {"pool_pre_ping": True}
        if readonly and url.startswith("postgresql"):
            options["execution_options"] = {"postgresql_readonly": True}
        return create_engine(url, **options)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StateError(f"cannot use state database {_safe_url(url)}: {exc}") from None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # 64 MB of page cache instead of 2: a million-row snapshot's index stays in memory
    # while acknowledgements are written (twice the write rate at that size).
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _upsert(conn: Any, table: Any, rows: list[dict[str, Any]], keys: Sequence[str],
            update: Iterable[str]) -> None:
    dialect = conn.dialect.name
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(table)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table)
    else:
        raise StateError(f"state databases on {dialect} are not supported; use SQLite or "
                         "PostgreSQL")
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in update})
    conn.execute(stmt, rows)


def _safe_url(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
    return url


def _state_error(url: str, exc: SQLAlchemyError) -> StateError:
    detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc)
    where = _safe_url(url)
    if isinstance(exc, OperationalError) and "locked" in str(detail):
        return StateError(f"the state database {where} is locked by another "
                          f"process: {detail}")
    if "readonly database" in str(detail) or "read-only" in str(detail):
        return StateError(f"the state database {where} is read-only: {detail}; this command "
                          "records what it sends, so it needs to write the database (check "
                          "the permissions of the file and of its folder)")
    if "unable to open database file" in str(detail):
        return StateError(f"cannot open the state database {where}: {detail} (check that its "
                          "folder exists and is readable and writable: SQLite keeps -wal and "
                          "-shm files beside the database)")
    if "not a database" in str(detail) or "malformed" in str(detail):
        return StateError(f"the state database {where} is corrupt: {detail}; restore it from "
                          "a backup, or move it away and run `syncer reconcile` to rebuild "
                          "the snapshot from Back Market")
    return StateError(f"state database {where}: {detail}")
