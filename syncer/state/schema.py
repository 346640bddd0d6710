"""The state database's tables, declared once with SQLAlchemy Core, and their column types.

Every store of ``syncer.state`` queries these tables; the migrations
(``syncer.state.migrations``) bring an older database to them. Nothing here opens a
connection.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
)

from syncer.core.offers import FIELDS


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """A datetime as read back: SQLite keeps no offset, what it gives back is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


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
        return None if value is None else aware(value)


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
SNAPSHOT = Table(
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
REVISION = Table(
    "store_revision", METADATA,
    _text("store", 64, key=True),
    _int("revision", default=0),
    _stamp("updated_at"),
)
RUNS = Table(
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
LOCKS = Table(
    "store_lock", METADATA,
    _text("store", 64, key=True),
    _text("holder", 200),
    _stamp("acquired_at"),
    _when("expires_at"),
)
# A batch POST in flight. Written before sending: its outcome is checked, never guessed.
BATCHES = Table(
    "pending_batch", METADATA,
    _int("id", key=True),
    _text("store", 64, index=True),
    _int("task_id", null=True),
    _stamp("created_at"),
    _text("offers", null=True),  # JSON: {sku_key: [sku, *published]} of every offer in the batch
)
# SKU lines sent on listing updates, per account: the hourly budget is a sliding sum.
LEDGER = Table(
    "budget_ledger", METADATA,
    _int("id", key=True),
    _text("account", 300, index=True),
    _when("spent_at", index=True),
    _int("lines"),
)
# A change that did not fit this run (the hourly budget): it goes first next run.
QUEUE = Table(
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
PROPOSALS = Table(
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
CATEGORIES = Table(
    "category_cache", METADATA,
    _text("account", 300, key=True),
    _text("tree", null=True),
    _stamp("fetched_at"),
)
# When an account's last requests were sent (wall clock), so that the next run starts within
# Back Market's per-10-seconds limit instead of bursting over it.
PACE = Table(
    "request_pace", METADATA,
    _text("account", 300, key=True),
    _text("sent", null=True),  # JSON list of epoch seconds
    _stamp("updated_at"),
)
# An order as Back Market last showed it (a pull, or the answer to a change), per account
# (order ids are Back Market's, unique on one platform).
ORDERS = Table(
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
ORDER_LINES = Table(
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
LINE_ACTIONS = Table(
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
SHIPMENTS = Table(
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
INVOICES = Table(
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
IDENTIFIERS = Table(
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
ORDER_PULLS = Table(
    "order_pull", METADATA,
    _text("store", 64, key=True),
    _text("scope", 8, key=True),  # "store" or "all"
    _when("watermark", null=True),
    _stamp("pulled_at"),
)
# What each alert channel was told about a problem (syncer/alerts/events.py): one row per store,
# kind, subject and channel, so that a problem is said once per channel, reminded after a
# delay, and a message a channel could not take stays pending for the next run.
ALERTS = Table(
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
SCHEMA = Table(
    "schema_info", METADATA,
    _text("key", 64, key=True),
    _text("value", 200),
)
# Alembic's record of the schema revision, in Alembic's own shape: created and written by
# Alembic (syncer/state/version.py), declared here so that METADATA has every table.
ALEMBIC_VERSION = Table(
    "alembic_version", METADATA,
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
TABLES: Final = (SNAPSHOT, REVISION, RUNS, LOCKS, BATCHES, LEDGER, QUEUE, PACE, PROPOSALS,
                 CATEGORIES, ORDERS, ORDER_LINES, LINE_ACTIONS, SHIPMENTS, ORDER_PULLS,
                 INVOICES, IDENTIFIERS, ALERTS, SCHEMA)
FIELD_COLUMNS: Final = tuple(SNAPSHOT.c[name] for name in FIELDS)
ENTRY_COLUMNS: Final = (SNAPSHOT.c.sku_key, SNAPSHOT.c.sku, SNAPSHOT.c.listing_id,
                        SNAPSHOT.c.confirmed_at, SNAPSHOT.c.status, SNAPSHOT.c.last_error,
                        SNAPSHOT.c.attempts, SNAPSHOT.c.request_id, SNAPSHOT.c.source_hash,
                        SNAPSHOT.c.failed_hash, *FIELD_COLUMNS)

# What the BackBox said of one listing in one market, when it was read (issue 15). One read
# (GET /ws/backbox/v1/competitors/{id}) answers every market of a listing: kept per account,
# the stores of one account share it. No schema version: create_all adds the table to an
# older database, and readers of a database without it see no competition data.
COMPETITION = Table(
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
SHOP_CREDITS = Table(
    "shop_credits", METADATA,
    _text("shop", 300, key=True),
    _text("month", 7, key=True),  # "2026-12"
    _int("spent", default=0),
)
# The public shop's view of a product as last read: the scraper's answer (JSON).
SHOP_VIEWS = Table(
    "shop_view", METADATA,
    _text("shop", 300, key=True),
    _text("product", 64, key=True),
    _text("data"),
    _when("read_at"),
)
# Price changes Back Market confirmed, per store and SKU (issue 15, part 4): what pricing's
# per-day budget and cooldown count (``pricing.Move``). Like the tables above, no schema
# version: create_all adds it, and a database without it has no moves yet.
PRICE_MOVES = Table(
    "price_move", METADATA,
    _text("store", 64, key=True),
    _text("sku_key", 128, key=True),
    _when("moved_at", key=True),
    _text("old_price", 24),
    _text("new_price", 24),
)
MARKET_TABLES: Final = (COMPETITION, SHOP_CREDITS, SHOP_VIEWS, PRICE_MOVES)
