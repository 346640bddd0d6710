"""The state database: snapshot of confirmed publications, run log, locks, batches in flight.

SQLite by default (a file under ``state/``), PostgreSQL in production, through SQLAlchemy Core.
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
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import structlog
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
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
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from syncer.config.sections import lease_renew_every
from syncer.core.competition import Competition
from syncer.core.crashpoints import crashpoint
from syncer.core.offers import FIELDS, QUANTITY, Published, content_hash, sku_key
from syncer.core.secrets import scrub
from syncer.errors import LockHeld, StateError

log = structlog.get_logger("syncer.state.store")

SCHEMA_VERSION: Final = 4
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
    # The sending priority of a queued offer (0 zero ... 3 new), for the queue's estimate.
    4: ("ALTER TABLE offer_queue ADD COLUMN priority INTEGER",),
}
# A run that did its work counts for scheduling, even if Back Market refused some offers
# (those are retried by the next run anyway). "stopped", "failed", "interrupted" do not.
SUCCESSFUL_OUTCOMES: Final = ("ok", "partial")
_BULK: Final = 2000
_ACK_CHUNK: Final = 10_000  # acknowledgements per transaction


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- tables ----------------------------------------------------------------------------------

class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every database: SQLite keeps no
    offset, so what it gives back is read as UTC. A naive datetime is refused (a bug)."""

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} written to the state: use utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else _aware(value)


def _column(name: str, kind: Any, *, key: bool = False, null: bool = False,
            **options: Any) -> Column[Any]:
    """A column that is NOT NULL unless ``null`` (primary keys never are)."""
    return Column(name, kind, primary_key=key, nullable=null and not key, **options)


def _text(name: str, length: int | None = None, **options: Any) -> Column[Any]:
    return _column(name, Text if length is None else String(length), **options)


def _when(name: str, **options: Any) -> Column[Any]:
    return _column(name, UTCDateTime(), **options)


def _stamp(name: str) -> Column[Any]:
    return _when(name, default=utcnow)


def _int(name: str, **options: Any) -> Column[Any]:
    return _column(name, Integer, **options)


# Declared with SQLAlchemy Core, as every query here is Core: tables as plain values cost a
# command's start-up a fraction of what model classes do (issue 12, item 16).
METADATA: Final = MetaData()

# Per store and SKU: the fields Back Market last confirmed, and the last failure.
_SNAPSHOT = Table(
    "offer_snapshot", METADATA,
    _text("store", 64, key=True),
    _text("sku_key", 128, key=True),
    _text("sku", 128),
    _text("listing_id", 64, null=True),
    # Confirmed published fields (all None until the first confirmation).
    _text("product_id", 64, null=True),
    _text("ean", 16, null=True),
    _text("grade", 16, null=True),
    _int("quantity", null=True),
    _text("price", 24, null=True),
    _text("currency", 3, null=True),
    _int("warranty_delay", null=True),
    _text("comment", null=True),
    _text("min_price", 24, null=True),
    _text("max_price", 24, null=True),
    _text("deee", 24, null=True),
    _text("shipping", null=True),
    _text("content_hash", 16, null=True),
    # Hash of the catalog row (and mapping) the confirmed fields came from: a row with the same
    # hash next time is unchanged without being validated again. None: not known.
    _column("source_hash", BigInteger, null=True),
    # When the request Back Market confirmed was sent: a confirmation of an older request
    # never replaces it (a batch can settle after a newer real-time update).
    _when("confirmed_at", null=True),
    # "live" (confirmed as published) or "failed" (the last attempt failed).
    _text("status", 16, default="live"),
    _text("last_error", null=True),
    # As Back Market sent them, whatever their length (schema version 3).
    _text("error_code", null=True),
    _text("request_id", null=True),
    _int("attempts", default=0),  # consecutive failed attempts
    _text("failed_hash", 16, null=True),
    _stamp("updated_at"),
)
# Bumped on every snapshot change: a saved plan records it to detect staleness.
_REVISION = Table(
    "store_revision", METADATA,
    _text("store", 64, key=True),
    _int("revision", default=0),
    _stamp("updated_at"),
)
_RUNS = Table(
    "run_log", METADATA,
    _int("id", key=True),
    _text("run_id", 64, index=True),
    _text("store", 64, index=True),
    _text("kind", 16),
    _stamp("started_at"),
    _when("finished_at", null=True),
    _text("outcome", 16, default="running"),
    _text("counts", null=True),
    _text("message", null=True),
)
_LOCKS = Table(
    "store_lock", METADATA,
    _text("store", 64, key=True),
    _text("holder", 200),
    _stamp("acquired_at"),
    _when("expires_at"),
)
# A batch POST in flight. Written before sending: its outcome is checked, never guessed.
_BATCHES = Table(
    "pending_batch", METADATA,
    _int("id", key=True),
    _text("store", 64, index=True),
    _int("task_id", null=True),
    _stamp("created_at"),
    _text("offers", null=True),  # JSON: {sku_key: [sku, *published]} of every offer in the batch
)
# SKU lines sent on listing updates, per account: the hourly budget is a sliding sum.
_LEDGER = Table(
    "budget_ledger", METADATA,
    _int("id", key=True),
    _text("account", 300, index=True),
    _when("spent_at", index=True),
    _int("lines"),
)
# A change that did not fit this run (the hourly budget): it goes first next run.
_QUEUE = Table(
    "offer_queue", METADATA,
    _text("store", 64, key=True),
    _text("sku_key", 128, key=True),
    _text("sku", 128),
    _text("reason", null=True),
    _when("queued_at"),
    # Change.priority: 0 zero, 1 stock, 2 other update, 3 new listing (None: queued by an
    # older version). Schema version 4.
    _int("priority", null=True),
)
# A product proposed to Back Market, per store (its country's content) and EAN.
_PROPOSALS = Table(
    "product_proposal", METADATA,
    _text("store", 64, key=True),
    _text("ean", 16, key=True),
    _text("sku", 128),
    _text("content_hash", 16),
    _text("status", 16),  # "proposed" (waiting for review), "live" (validated) or "rejected"
    _text("reason", null=True),
    _text("product_id", 64, null=True),
    _stamp("updated_at"),
)
# Back Market's category tree as last read, so that plans can check attributes.
_CATEGORIES = Table(
    "category_cache", METADATA,
    _text("account", 300, key=True),
    _text("tree", null=True),
    _stamp("fetched_at"),
)
# When an account's last requests were sent (wall clock), so that the next run starts within
# Back Market's per-10-seconds limit instead of bursting over it.
_PACE = Table(
    "request_pace", METADATA,
    _text("account", 300, key=True),
    _text("sent", null=True),  # JSON list of epoch seconds
    _stamp("updated_at"),
)
# An order as Back Market last showed it (a pull, or the answer to a change), per account
# (order ids are Back Market's, unique on one platform).
_ORDERS = Table(
    "order_record", METADATA,
    _text("account", 300, key=True),
    _int("order_id", key=True),
    _text("store", 64, index=True),  # the store that first pulled it
    _text("country_code", 8),
    _int("state"),
    _text("currency", 3, null=True),
    _text("price", 24, null=True),
    _text("shipping_price", 24, null=True),
    _when("date_creation", null=True),
    _when("date_modification", null=True),
    _when("date_payment", null=True),
    _when("date_shipping", null=True),
    _text("tracking_number", 200, null=True),
    _text("tracking_url", null=True),
    _text("shipper", 200, null=True),
    _text("content_hash", 16),  # of the order's canonical JSON
    _text("data", null=True),  # the order's JSON as Back Market sent it
    _stamp("pulled_at"),
)
_ORDER_LINES = Table(
    "order_line", METADATA,
    _text("account", 300, key=True),
    _int("orderline_id", key=True),
    _int("order_id", index=True),
    _text("sku", 128),
    _int("quantity"),
    _text("price", 24, null=True),  # unit price
    _text("shipping_price", 24, null=True),
    _text("currency", 3, null=True),
    _int("state"),
    _text("product", null=True),
    _text("imei", 15, null=True),
    _text("serial_number", 50, null=True),
)
# What the syncer did or decided about a paid line: accepted, cancelled, or held for the
# seller (with the reason), and whether Back Market confirmed it.
_LINE_ACTIONS = Table(
    "order_line_action", METADATA,
    _text("account", 300, key=True),
    _int("orderline_id", key=True),
    _int("order_id", index=True),
    _text("sku", 128),
    _text("action", 16),  # "accept", "cancel" or "hold"
    _text("status", 16),  # "confirmed", "failed" or "held"
    _text("reason", null=True),
    _text("request_id", null=True),
    _int("attempts", default=0),
    _stamp("updated_at"),
)
# A shipment sent for an order. Once ``confirmed`` it is never sent again.
_SHIPMENTS = Table(
    "order_shipment", METADATA,
    _text("account", 300, key=True),
    _int("order_id", key=True),
    _text("store", 64),
    _text("carrier", 200),  # the seller's name for it
    _text("shipper", 200, null=True),  # Back Market's value
    _text("tracking_number", 200),
    _text("tracking_url", null=True),
    _text("imei", 15, null=True),
    _text("serial_number", 50, null=True),
    _text("status", 16),  # "confirmed" or "failed"
    _text("error", null=True),
    _text("request_id", 128, null=True),
    _int("attempts", default=0),
    _when("confirmed_at", null=True),
    _stamp("updated_at"),
)
# The seller's invoice sent for an order. Once ``confirmed`` it is never sent again.
_INVOICES = Table(
    "order_invoice", METADATA,
    _text("account", 300, key=True),
    _int("order_id", key=True),
    _text("store", 64),
    _text("path"),  # the file as the invoices file names it
    _text("sha256", 64, null=True),  # of the file sent
    _int("size", null=True),
    _text("status", 16),  # "confirmed" or "failed"
    _text("error", null=True),
    _text("request_id", null=True),
    _int("attempts", default=0),
    _when("confirmed_at", null=True),
    _stamp("updated_at"),
)
# The IMEI and serial number registered on an order line after the shipment (PATCH
# /ws/orderlines/{id}): the confirmed values are never sent again.
_IDENTIFIERS = Table(
    "order_line_identifier", METADATA,
    _text("account", 300, key=True),
    _int("orderline_id", key=True),
    _int("order_id", index=True),
    _text("store", 64),
    _text("sku", 128),
    _text("imei", 15, null=True),  # confirmed values only
    _text("serial_number", 50, null=True),
    _text("status", 16),  # of the last attempt: "confirmed" or "failed"
    _text("error", null=True),
    _text("request_id", null=True),
    _int("attempts", default=0),
    _when("confirmed_at", null=True),
    _stamp("updated_at"),
)
# Per store and scope: the latest ``date_modification`` a successful pull has seen.
_ORDER_PULLS = Table(
    "order_pull", METADATA,
    _text("store", 64, key=True),
    _text("scope", 8, key=True),  # "store" or "all"
    _when("watermark", null=True),
    _stamp("pulled_at"),
)
# What each alert channel was told about a problem (syncer/alerts/events.py): one row per store,
# kind, subject and channel, so that a problem is said once per channel, reminded after a
# delay, and a message a channel could not take stays pending for the next run.
_ALERTS = Table(
    "alert_state", METADATA,
    _text("store", 64, key=True),
    _text("kind", 32, key=True),
    _text("subject", 200, key=True),  # a SKU, a job kind, or "" (the store itself)
    _text("channel", 16, key=True),  # "webhook", "slack" or "email"
    _text("status", 16),  # "open", "resolved", or "done" (said once, never again)
    _text("pending", 16, null=True),  # still to tell: "opened", "reminder" or "resolved"
    _text("message"),  # scrubbed: what the pending (or last) message says
    _text("counts", null=True),  # JSON
    _text("run_id", 64),
    _when("opened_at"),
    _when("sent_at", null=True),  # the last message this channel took
    _int("failures", default=0),  # deliveries failed in a row
    _text("last_error", null=True),
    _stamp("updated_at"),
)
_SCHEMA = Table(
    "schema_info", METADATA,
    _text("key", 64, key=True),
    _text("value", 200),
)
_TABLES = (_SNAPSHOT, _REVISION, _RUNS, _LOCKS, _BATCHES, _LEDGER, _QUEUE, _PACE, _PROPOSALS,
           _CATEGORIES, _ORDERS, _ORDER_LINES, _LINE_ACTIONS, _SHIPMENTS, _ORDER_PULLS,
           _INVOICES, _IDENTIFIERS, _ALERTS, _SCHEMA)
_FIELD_COLUMNS: Final = tuple(_SNAPSHOT.c[name] for name in FIELDS)
_ENTRY_COLUMNS: Final = (_SNAPSHOT.c.sku_key, _SNAPSHOT.c.sku, _SNAPSHOT.c.listing_id,
                         _SNAPSHOT.c.confirmed_at, _SNAPSHOT.c.status, _SNAPSHOT.c.last_error,
                         _SNAPSHOT.c.attempts, _SNAPSHOT.c.request_id, _SNAPSHOT.c.source_hash,
                         _SNAPSHOT.c.failed_hash, *_FIELD_COLUMNS)

# What the BackBox said of one listing in one market, when it was read (issue 15). One read
# (GET /ws/backbox/v1/competitors/{id}) answers every market of a listing: kept per account,
# the stores of one account share it. No schema version: create_all adds the table to an
# older database, and readers of a database without it see no competition data.
_COMPETITION = Table(
    "listing_competition", METADATA,
    _text("account", 300, key=True),
    _text("listing_id", 64, key=True),
    _text("market", 8, key=True),
    _text("currency", 3),
    _text("price", 24),
    _text("min_price", 24, null=True),
    _text("price_to_win", 24),
    _text("winner_price", 24, null=True),
    _int("is_winning"),
    _when("read_at", index=True),
)
# Credits spent on the public-shop scraper per calendar month (UTC), per scraper and key
# name (never the key): its allowance is monthly.
_SHOP_CREDITS = Table(
    "shop_credits", METADATA,
    _text("shop", 300, key=True),
    _text("month", 7, key=True),  # "2026-12"
    _int("spent", default=0),
)
# The public shop's view of a product as last read: the scraper's answer (JSON).
_SHOP_VIEWS = Table(
    "shop_view", METADATA,
    _text("shop", 300, key=True),
    _text("product", 64, key=True),
    _text("data"),
    _when("read_at"),
)
# Price changes Back Market confirmed, per store and SKU (issue 15, part 4): what pricing's
# per-day budget and cooldown count (``pricing.Move``). Like the tables above, no schema
# version: create_all adds it, and a database without it has no moves yet.
_PRICE_MOVES = Table(
    "price_move", METADATA,
    _text("store", 64, key=True),
    _text("sku_key", 128, key=True),
    _when("moved_at", key=True),
    _text("old_price", 24),
    _text("new_price", 24),
)
_MARKET_TABLES: Final = (_COMPETITION, _SHOP_CREDITS, _SHOP_VIEWS, _PRICE_MOVES)


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
        self._tables_seen: dict[str, bool] = {}  # table name -> present (see _has_table)

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
            METADATA.create_all(self.engine, tables=[*_TABLES, *_MARKET_TABLES])
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
        in memory for a million offers (see ``syncer.planning.diff.SnapshotSource``)."""
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
        with self._write() as conn:
            for start in range(0, len(rows), _BULK):
                _upsert(conn, _QUEUE, rows[start:start + _BULK], ("store", "sku_key"),
                        ["reason", "priority"])

    def queue_counts(self, store: str) -> dict[int | None, tuple[int, datetime]]:
        """Priority -> (offers queued, the oldest's queued_at) of the store's queue."""
        if self.empty:
            return {}
        with self._read() as conn:
            rows = conn.execute(
                select(_QUEUE.c.priority, func.count(), func.min(_QUEUE.c.queued_at))
                .where(_QUEUE.c.store == store).group_by(_QUEUE.c.priority))
            return {priority: (int(count), _aware(oldest)) for priority, count, oldest in rows}

    def budget_spent(self, account: str, now: datetime | None = None
                     ) -> list[tuple[datetime, int]]:
        """(spent_at, lines) of the account's hourly budget still counted at ``now``, oldest
        first: when each frees (an hour after it was spent)."""
        if self.empty:
            return []
        since = (now or utcnow()) - timedelta(hours=1)
        with self._read() as conn:
            rows = conn.execute(select(_LEDGER.c.spent_at, _LEDGER.c.lines).where(
                _LEDGER.c.account == account, _LEDGER.c.spent_at > since)
                .order_by(_LEDGER.c.spent_at))
            return [(_aware(at), int(lines)) for at, lines in rows]

    def unqueue(self, store: str, skus: Sequence[str]) -> None:
        """Take offers out of the queue (nothing is left to send for them)."""
        if skus:
            with self._write() as conn:
                self._unqueue(conn, store, [sku_key(sku) for sku in skus])

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

    # -- alerts (syncer/alerts/events.py) --
    def finished_runs(self, store: str, kinds: Sequence[str], *, limit: int | None = None,
                      oldest_first: bool = False) -> list[dict[str, Any]]:
        """The store's finished runs of these kinds, newest first (or oldest first)."""
        if self.empty:
            return []
        order = _RUNS.c.id.asc() if oldest_first else _RUNS.c.id.desc()
        query = select(_RUNS).where(_RUNS.c.store == store, _RUNS.c.kind.in_(list(kinds)),
                                    _RUNS.c.outcome != "running").order_by(order).limit(limit)
        with self._read() as conn:
            return [{**row._asdict(), "counts": json.loads(row.counts or "{}")}
                    for row in conn.execute(query)]

    def alert_rows(self, store: str) -> list[dict[str, Any]]:
        if self.empty:
            return []
        with self._read() as conn:
            return [{**row._asdict(), "counts": json.loads(row.counts or "{}")}
                    for row in conn.execute(select(_ALERTS).where(_ALERTS.c.store == store)
                                            .order_by(_ALERTS.c.kind, _ALERTS.c.subject))]

    def save_alert_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace whole rows of the alert state (messages scrubbed again)."""
        if not rows:
            return
        now = utcnow()
        records = [{**row, "message": scrub(row["message"]),
                    "last_error": row.get("last_error") and scrub(row["last_error"]),
                    "counts": json.dumps(row.get("counts") or {}, sort_keys=True),
                    "updated_at": now} for row in rows]
        keys = ("store", "kind", "subject", "channel")
        with self._write() as conn:
            _upsert(conn, _ALERTS, records, keys,
                    [c.name for c in _ALERTS.columns if c.name not in keys])


    # -- competition (the BackBox) and the public shop (issue 15) --
    def _has_table(self, table: Table) -> bool:
        """False on a database made before the table existed and opened read-only (plan,
        market): nothing was read into it yet."""
        if self.empty:
            return False
        if table.name not in self._tables_seen:
            with self._read() as conn:
                self._tables_seen[table.name] = inspect(conn).has_table(table.name)
        return self._tables_seen[table.name]

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
        with self._write() as conn:
            for start in range(0, len(rows), _BULK):
                _upsert(conn, _COMPETITION, rows[start:start + _BULK],
                        ("account", "listing_id", "market"),
                        ["currency", "price", "min_price", "price_to_win", "winner_price",
                         "is_winning", "read_at"])
        self._tables_seen[_COMPETITION.name] = True

    def competition(self, account: str) -> dict[tuple[str, str], Competition]:
        """(listing id, market) -> what the BackBox said at its last read."""
        if not self._has_table(_COMPETITION):
            return {}
        c = _COMPETITION.c
        with self._read() as conn:
            rows = conn.execute(select(
                c.listing_id, c.market, c.currency, c.price, c.min_price, c.price_to_win,
                c.winner_price, c.is_winning, c.read_at).where(c.account == account))
            return {(row.listing_id, row.market): Competition(
                listing_id=row.listing_id, market=row.market, currency=row.currency,
                price=Decimal(row.price),
                min_price=None if row.min_price is None else Decimal(row.min_price),
                price_to_win=Decimal(row.price_to_win),
                winner_price=None if row.winner_price is None else Decimal(row.winner_price),
                is_winning=bool(row.is_winning), read_at=_aware(row.read_at))
                for row in rows}

    def market_listings(self, store: str) -> list[tuple[str, str, int, str | None,
                                                        str | None, datetime]]:
        """(sku, listing id, quantity, price, currency, confirmed_at) of every confirmed
        offer of the store whose listing is known: what a market pass may read."""
        if self.empty:
            return []
        c = _SNAPSHOT.c
        with self._read() as conn:
            rows = conn.execute(select(
                c.sku, c.listing_id, c.quantity, c.price, c.currency, c.confirmed_at).where(
                c.store == store, c.listing_id.is_not(None), c.confirmed_at.is_not(None))
                .order_by(c.sku_key))
            return [(sku, listing_id, int(quantity or 0), price, currency, _aware(at))
                    for sku, listing_id, quantity, price, currency, at in rows]

    def shop_credits_spent(self, shop: str, month: str) -> int:
        if not self._has_table(_SHOP_CREDITS):
            return 0
        with self._read() as conn:
            return int(conn.execute(select(_SHOP_CREDITS.c.spent).where(
                _SHOP_CREDITS.c.shop == shop, _SHOP_CREDITS.c.month == month)).scalar() or 0)

    def spend_shop_credits(self, shop: str, month: str, credits: int, cap: int) -> int:
        """Take up to ``credits`` from the month's allowance of ``cap``; returns what was
        granted (check and spend in one transaction, as the hourly SKU budget)."""
        with self._write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:shop))"),
                             {"shop": shop})
            c = _SHOP_CREDITS.c
            spent = int(conn.execute(select(c.spent).where(
                c.shop == shop, c.month == month)).scalar() or 0)
            granted = max(0, min(credits, cap - spent))
            if granted:
                _upsert(conn, _SHOP_CREDITS, [{"shop": shop, "month": month,
                                               "spent": spent + granted}],
                        ("shop", "month"), ["spent"])
        return granted

    def save_shop_view(self, shop: str, product: str, data: dict[str, Any],
                       read_at: datetime) -> None:
        with self._write() as conn:
            _upsert(conn, _SHOP_VIEWS, [{"shop": shop, "product": product,
                                         "data": json.dumps(data, sort_keys=True),
                                         "read_at": read_at}],
                    ("shop", "product"), ["data", "read_at"])

    def shop_view(self, shop: str, product: str) -> tuple[dict[str, Any], datetime] | None:
        if not self._has_table(_SHOP_VIEWS):
            return None
        with self._read() as conn:
            row = conn.execute(select(_SHOP_VIEWS.c.data, _SHOP_VIEWS.c.read_at).where(
                _SHOP_VIEWS.c.shop == shop, _SHOP_VIEWS.c.product == product)).first()
        return None if row is None else (dict(json.loads(row.data)), _aware(row.read_at))

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
        c = _PRICE_MOVES.c
        with self._write() as conn:
            found = list(rows.values())
            for start in range(0, len(found), _BULK):
                _upsert(conn, _PRICE_MOVES, found[start:start + _BULK],
                        ("store", "sku_key", "moved_at"), ["old_price", "new_price"])
            conn.execute(sa_delete(_PRICE_MOVES).where(c.store == store,
                                                        c.moved_at < at - keep))
        self._tables_seen[_PRICE_MOVES.name] = True

    def price_moves(self, store: str, since: datetime
                    ) -> dict[str, list[tuple[datetime, Decimal, Decimal]]]:
        """SKU key -> its confirmed moves (at, old, new) since ``since``, oldest first."""
        if not self._has_table(_PRICE_MOVES):
            return {}
        c = _PRICE_MOVES.c
        found: dict[str, list[tuple[datetime, Decimal, Decimal]]] = {}
        with self._read() as conn:
            for row in conn.execute(select(c.sku_key, c.moved_at, c.old_price, c.new_price)
                                    .where(c.store == store, c.moved_at >= since)
                                    .order_by(c.sku_key, c.moved_at)):
                found.setdefault(row.sku_key, []).append(
                    (_aware(row.moved_at), Decimal(row.old_price), Decimal(row.new_price)))
        return found


class StoreSnapshot:
    """A store's snapshot as the diff reads it (``syncer.planning.diff.SnapshotSource``): a compact
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
    every third of the lease (``syncer.config.settings.lease_renew_every``)."""

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
    # Each dialect is imported where it is used: the engine has loaded it already, and a
    # command on SQLite does not pay for PostgreSQL's (issue 12, item 16).
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql
        stmt = postgresql.insert(table)
    elif dialect == "sqlite":
        from sqlalchemy.dialects import sqlite
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
